// tw's structured logging on spdlog: spdlog owns the timestamp, the level column, the locking
// and the sinks; this file keeps tw's line format (`TIME LEVEL msg="..." key=value ...`) and
// its process-wide level.
#include "tw/common/log.h"

#include <spdlog/logger.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <atomic>
#include <memory>
#include <mutex>

#include "tw/common/strings.h"

namespace tw::log {
namespace {

std::atomic<int> g_level{static_cast<int>(Level::kInfo)};

spdlog::level::level_enum ToSpdlog(Level level) {
  switch (level) {
    case Level::kDebug:
      return spdlog::level::debug;
    case Level::kInfo:
      return spdlog::level::info;
    case Level::kWarn:
      return spdlog::level::warn;
    case Level::kError:
      return spdlog::level::err;
  }
  return spdlog::level::err;
}

// The `%*` flag: tw's level names (INFO, WARN, ...), not spdlog's (info, warning, ...).
class LevelFlag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    std::string_view name = "ERROR";
    if (msg.level == spdlog::level::debug) name = "DEBUG";
    if (msg.level == spdlog::level::info) name = "INFO";
    if (msg.level == spdlog::level::warn) name = "WARN";
    if (msg.level == spdlog::level::critical) name = "AUDIT";  // log::Audit, never filtered
    dest.append(name.data(), name.data() + name.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<LevelFlag>();
  }
};

// Appends each formatted line to a string (SetSinkForTest).
class StringSink : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit StringSink(std::string* out) : out_(out) {}

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t line;
    formatter_->format(msg, line);
    out_->append(line.data(), line.size());
  }
  void flush_() override {}

 private:
  std::string* out_;
};

std::unique_ptr<spdlog::formatter> MakeFormatter() {
  auto f = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
  f->add_flag<LevelFlag>('*').set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %* %v");
  return f;
}

// The one logger. Leaked on purpose: a line logged while other statics are destroyed (a
// background thread stopping) still finds it.
spdlog::logger& Logger() {
  static spdlog::logger* logger = [] {
    auto* l = new spdlog::logger("tw", std::make_shared<spdlog::sinks::stderr_sink_mt>());
    l->set_formatter(MakeFormatter());
    l->set_level(spdlog::level::trace);  // Enabled() filters, with tw's level
    l->flush_on(spdlog::level::trace);
    return l;
  }();
  return *logger;
}

bool NeedsQuotes(std::string_view v) {
  if (v.empty()) return true;
  for (char c : v) {
    if (c == ' ' || c == '"' || c == '=' || c == '\n' || c == '\t') return true;
  }
  return false;
}

void AppendValue(std::string& out, std::string_view v) {
  if (!NeedsQuotes(v)) {
    out.append(v);
    return;
  }
  out.push_back('"');
  for (char c : v) {
    if (c == '"' || c == '\\') out.push_back('\\');
    if (c == '\n') {
      out.append("\\n");
      continue;
    }
    out.push_back(c);
  }
  out.push_back('"');
}

}  // namespace

std::string_view ToString(Level level) {
  switch (level) {
    case Level::kDebug:
      return "DEBUG";
    case Level::kInfo:
      return "INFO";
    case Level::kWarn:
      return "WARN";
    case Level::kError:
      return "ERROR";
  }
  return "UNKNOWN";
}

StatusOr<Level> ParseLevel(std::string_view text, std::string_view field) {
  std::string t = ToLower(text);
  if (t == "debug") return Level::kDebug;
  if (t == "info") return Level::kInfo;
  if (t == "warn" || t == "warning") return Level::kWarn;
  if (t == "error") return Level::kError;
  return InvalidArgumentError(
      StrCat(field, ": unknown log level \"", text, "\" (expected debug, info, warn or error)"));
}

void SetLevel(Level level) { g_level.store(static_cast<int>(level)); }
Level GetLevel() { return static_cast<Level>(g_level.load(std::memory_order_relaxed)); }

namespace {

// `msg="..." key=value ...`: the line after the time and level columns.
std::string Body(std::string_view message, std::initializer_list<Field> fields) {
  std::string body = "msg=";
  AppendValue(body, message);
  for (const Field& f : fields) {
    body.push_back(' ');
    body.append(f.key);
    body.push_back('=');
    AppendValue(body, f.value);
  }
  return body;
}

}  // namespace

void Write(Level level, std::string_view message, std::initializer_list<Field> fields) {
  if (!Enabled(level)) return;
  std::string body = Body(message, fields);
  Logger().log(ToSpdlog(level), spdlog::string_view_t(body.data(), body.size()));
}

void Audit(std::string_view message, std::initializer_list<Field> fields) {
  std::string body = Body(message, fields);
  Logger().log(spdlog::level::critical, spdlog::string_view_t(body.data(), body.size()));
}

void SetSinkForTest(std::string* sink) {
  spdlog::sink_ptr s;
  if (sink != nullptr) {
    s = std::make_shared<StringSink>(sink);
  } else {
    s = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  }
  s->set_formatter(MakeFormatter());
  Logger().sinks().assign(1, s);
}

}  // namespace tw::log
