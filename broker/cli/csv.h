// A strict CSV reader for subscriber files (RFC 4180 subset): comma
// separated, optional double quotes ("" inside quotes is a quote), LF or
// CRLF line ends, blank lines skipped, a UTF-8 byte order mark at the start
// ignored. A quoted field may not span lines,
// so the line numbers in errors are physical lines (the header is line 1).
#ifndef SIMPROV_BROKER_CLI_CSV_H_
#define SIMPROV_BROKER_CLI_CSV_H_

#include <istream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace simprov {

class CsvReader {
 public:
  explicit CsvReader(std::istream& in) : in_(in) {}
  // Reads the next non-blank record. Returns false at end of input; an
  // error names the line.
  absl::StatusOr<bool> Next(std::vector<std::string>* fields);
  // Physical line number of the record Next() returned last.
  uint64_t line() const { return line_; }

 private:
  std::istream& in_;
  uint64_t line_ = 0;
};

}  // namespace simprov

#endif  // SIMPROV_BROKER_CLI_CSV_H_
