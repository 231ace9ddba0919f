#include "broker/cli/csv.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace simprov {

namespace {
constexpr size_t kMaxLine = 4096;
}

absl::StatusOr<bool> CsvReader::Next(std::vector<std::string>* fields) {
  std::string text;
  while (true) {
    // Reads one line, never buffering more than kMaxLine + 2 bytes of it.
    text.clear();
    int c;
    bool any = false;
    while ((c = in_.get()) != EOF) {
      any = true;
      if (c == '\n') break;
      if (text.size() > kMaxLine) {
        return absl::InvalidArgumentError(absl::StrCat(
            "line ", line_ + 1, ": longer than ", kMaxLine, " bytes"));
      }
      text.push_back(static_cast<char>(c));
    }
    if (!any) return false;
    ++line_;
    // A UTF-8 byte order mark (spreadsheets write one) is not data.
    if (line_ == 1 && text.rfind("\xEF\xBB\xBF", 0) == 0) text.erase(0, 3);
    if (!text.empty() && text.back() == '\r') text.pop_back();
    if (text.size() > kMaxLine) {
      return absl::InvalidArgumentError(
          absl::StrCat("line ", line_, ": longer than ", kMaxLine, " bytes"));
    }
    if (!absl::StripAsciiWhitespace(text).empty()) break;
  }
  fields->clear();
  std::string field;
  size_t i = 0;
  while (true) {
    field.clear();
    // Leading spaces before a quote are allowed.
    size_t j = i;
    while (j < text.size() && text[j] == ' ') ++j;
    if (j < text.size() && text[j] == '"') {
      i = j + 1;
      bool closed = false;
      while (i < text.size()) {
        if (text[i] == '"') {
          if (i + 1 < text.size() && text[i + 1] == '"') {
            field += '"';
            i += 2;
            continue;
          }
          closed = true;
          ++i;
          break;
        }
        field += text[i++];
      }
      if (!closed) {
        return absl::InvalidArgumentError(
            absl::StrCat("line ", line_, ": unterminated quoted field"));
      }
      while (i < text.size() && text[i] == ' ') ++i;
      if (i < text.size() && text[i] != ',') {
        return absl::InvalidArgumentError(absl::StrCat(
            "line ", line_, ": unexpected text after a quoted field"));
      }
    } else {
      size_t comma = text.find(',', i);
      field = text.substr(
          i, comma == std::string::npos ? std::string::npos : comma - i);
      i = comma == std::string::npos ? text.size() : comma;
      field = std::string(absl::StripAsciiWhitespace(field));
      if (field.find('"') != std::string::npos) {
        return absl::InvalidArgumentError(
            absl::StrCat("line ", line_, ": a quote inside an unquoted field"));
      }
    }
    fields->push_back(field);
    if (i >= text.size()) break;
    ++i;                     // skip the comma
    if (i == text.size()) {  // trailing comma: one more empty field
      fields->push_back("");
      break;
    }
  }
  return true;
}

}  // namespace simprov
