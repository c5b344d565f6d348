#include "tw/operator/http_parser.h"

#include <cctype>
#include <charconv>

#include "tw/common/strings.h"

namespace tw::op {
namespace {

HttpParseResult Error(int status, std::string message) {
  HttpParseResult r;
  r.state = HttpParseState::kError;
  r.error_status = status;
  r.error = std::move(message);
  return r;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// RFC 9110 token characters (method and header names).
bool IsToken(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s) {
    if (std::isalnum(c)) continue;
    if (std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) == std::string_view::npos) {
      return false;
    }
  }
  return true;
}

bool HasToken(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view item = Trim(list.substr(0, comma));
    if (Lower(item) == token) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

}  // namespace

std::string_view HttpRequest::Header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (k == name) return v;
  }
  return {};
}

std::string_view HttpRequest::Path() const {
  std::string_view t = target;
  return t.substr(0, t.find('?'));
}

HttpParseResult ParseHttpRequest(std::string_view data, const HttpLimits& limits,
                                 HttpRequest* out) {
  size_t end = data.find("\r\n\r\n");
  if (end == std::string_view::npos) {
    if (data.size() > limits.max_header_bytes) {
      return Error(431,
                   StrCat("request header block longer than ", limits.max_header_bytes, " bytes"));
    }
    return {};
  }
  if (end + 4 > limits.max_header_bytes) {
    return Error(431,
                 StrCat("request header block longer than ", limits.max_header_bytes, " bytes"));
  }
  std::string_view head = data.substr(0, end);
  HttpRequest req;
  size_t line_end = head.find("\r\n");
  std::string_view line = head.substr(0, line_end);
  size_t sp1 = line.find(' ');
  size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) {
    return Error(400, "malformed request line");
  }
  req.method = std::string(line.substr(0, sp1));
  req.target = std::string(line.substr(sp1 + 1, sp2 - sp1 - 1));
  req.version = std::string(line.substr(sp2 + 1));
  if (!IsToken(req.method)) return Error(400, "malformed request method");
  if (req.target.empty() || req.target[0] != '/') return Error(400, "request target is not a path");
  for (unsigned char c : req.target) {
    if (c <= ' ' || c >= 0x7f) return Error(400, "request target has a control character");
  }
  if (req.version != "HTTP/1.1" && req.version != "HTTP/1.0") {
    if (req.version.starts_with("HTTP/")) return Error(505, "only HTTP/1.0 and 1.1 are served");
    return Error(400, "malformed HTTP version");
  }

  std::string_view rest =
      line_end == std::string_view::npos ? std::string_view() : head.substr(line_end + 2);
  while (!rest.empty()) {
    size_t eol = rest.find("\r\n");
    std::string_view h = rest.substr(0, eol);
    rest = eol == std::string_view::npos ? std::string_view() : rest.substr(eol + 2);
    size_t colon = h.find(':');
    if (colon == std::string_view::npos || !IsToken(h.substr(0, colon))) {
      return Error(400, "malformed header line");
    }
    std::string_view value = Trim(h.substr(colon + 1));
    for (unsigned char c : value) {
      if ((c < ' ' && c != '\t') || c == 0x7f) return Error(400, "header value has a control byte");
    }
    req.headers.emplace_back(Lower(h.substr(0, colon)), std::string(value));
  }

  bool has_length = false;
  uint64_t length = 0;
  for (const auto& [k, v] : req.headers) {
    if (k == "transfer-encoding") return Error(501, "Transfer-Encoding is not supported");
    if (k != "content-length") continue;
    uint64_t n = 0;
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc() || p != v.data() + v.size() || v.empty()) {
      return Error(400, "malformed Content-Length");
    }
    if (has_length && n != length) return Error(400, "conflicting Content-Length headers");
    has_length = true;
    length = n;
  }
  if (!has_length && (req.method == "POST" || req.method == "PUT" || req.method == "PATCH")) {
    return Error(411, "Content-Length is required");
  }
  if (length > limits.max_body_bytes) {
    return Error(413, StrCat("request body of ", length, " bytes is over the limit of ",
                             limits.max_body_bytes));
  }
  size_t body_start = end + 4;
  if (data.size() - body_start < length) return {};
  req.body = std::string(data.substr(body_start, length));

  std::string_view connection = req.Header("connection");
  req.keep_alive = req.version == "HTTP/1.1" ? !HasToken(connection, "close")
                                             : HasToken(connection, "keep-alive");
  *out = std::move(req);
  HttpParseResult r;
  r.state = HttpParseState::kComplete;
  r.consumed = body_start + length;
  return r;
}

std::string_view HttpReason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 411:
      return "Length Required";
    case 413:
      return "Content Too Large";
    case 415:
      return "Unsupported Media Type";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

std::string HttpResponseBytes(int status, std::string_view content_type, std::string_view body,
                              bool keep_alive) {
  return StrCat("HTTP/1.1 ", status, " ", HttpReason(status), "\r\nContent-Type: ", content_type,
                "\r\nContent-Length: ", body.size(), "\r\n",
                keep_alive ? "" : "Connection: close\r\n", "\r\n", body);
}

}  // namespace tw::op
