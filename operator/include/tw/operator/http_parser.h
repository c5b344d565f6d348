// HTTP/1.1 request parsing and response writing for the admission webhook's server: pure
// functions over bytes, no sockets. ParseHttpRequest() takes whatever has arrived so far and
// says whether a complete request is there (and how many bytes it used), more is needed, or
// the bytes can never become a valid request (with the status to answer). Only what an API
// server sends is accepted: a request line, headers, and a body framed by Content-Length
// (Transfer-Encoding is refused with 501). Limits bound the header block and the body, so a
// hostile client cannot make the server buffer without end. No threading rules.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tw::op {

struct HttpLimits {
  // The request line plus every header, including the blank line.
  size_t max_header_bytes = 16 << 10;
  // The body (an AdmissionReview; the API server caps objects at 3 MiB).
  size_t max_body_bytes = 4 << 20;
};

struct HttpRequest {
  std::string method;   // "POST"
  std::string target;   // "/mutate-pods?timeout=5s"
  std::string version;  // "HTTP/1.1"
  // Header names lower-cased, values trimmed, in arrival order.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // The connection may carry another request after this one.
  bool keep_alive = true;

  // The first value of header `name` (lower-case), or "" when absent.
  std::string_view Header(std::string_view name) const;
  // The target without its query string.
  std::string_view Path() const;
};

enum class HttpParseState {
  kIncomplete,  // more bytes are needed
  kComplete,    // a request was parsed; `consumed` bytes belong to it
  kError,       // never a valid request: answer `error_status` and close
};

struct HttpParseResult {
  HttpParseState state = HttpParseState::kIncomplete;
  size_t consumed = 0;
  int error_status = 0;  // 400, 411, 413, 431, 501 or 505 with kError
  std::string error;     // why, for the response body and the log
};

// Parses one request from the start of `data` into `*out` (overwritten on kComplete).
HttpParseResult ParseHttpRequest(std::string_view data, const HttpLimits& limits, HttpRequest* out);

// A complete response with Content-Length (and "Connection: close" unless `keep_alive`).
std::string HttpResponseBytes(int status, std::string_view content_type, std::string_view body,
                              bool keep_alive);

// "OK", "Bad Request", ... ("Unknown" for codes not used here).
std::string_view HttpReason(int status);

}  // namespace tw::op
