#include "broker/cli/csv.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

namespace simprov {
namespace {

using ::testing::ContainsRegex;
using ::testing::ElementsAre;

using Rows = std::vector<std::vector<std::string>>;

// Reads all records; fails the test on an error.
Rows ReadAll(const std::string& text, std::vector<uint64_t>* lines = nullptr) {
  std::istringstream in(text);
  CsvReader reader(in);
  Rows rows;
  std::vector<std::string> fields;
  while (true) {
    auto more = reader.Next(&fields);
    EXPECT_TRUE(more.ok()) << more.status();
    if (!more.ok() || !*more) break;
    rows.push_back(fields);
    if (lines) lines->push_back(reader.line());
  }
  return rows;
}

// Reads until the first error and returns it (OK if there was none).
absl::Status FirstError(const std::string& text) {
  std::istringstream in(text);
  CsvReader reader(in);
  std::vector<std::string> fields;
  while (true) {
    auto more = reader.Next(&fields);
    if (!more.ok()) return more.status();
    if (!*more) return absl::OkStatus();
  }
}

TEST(CsvReaderTest, PlainRows) {
  std::vector<uint64_t> lines;
  Rows rows = ReadAll(
      "imsi,k,opc\n001010000000001,aa,bb\n001010000000002,cc,dd\n", &lines);
  EXPECT_EQ(rows, (Rows{{"imsi", "k", "opc"},
                        {"001010000000001", "aa", "bb"},
                        {"001010000000002", "cc", "dd"}}));
  EXPECT_EQ(lines, (std::vector<uint64_t>{1, 2, 3}));
}

TEST(CsvReaderTest, ByteOrderMarkOnlyAtTheStart) {
  EXPECT_EQ(ReadAll("\xEF\xBB\xBFimsi,ki\r\na,b\n"),
            (Rows{{"imsi", "ki"}, {"a", "b"}}));
  EXPECT_EQ(ReadAll("\xEF\xBB\xBF\"imsi\",ki\n"), (Rows{{"imsi", "ki"}}));
  // Elsewhere it is data.
  EXPECT_EQ(ReadAll("a,b\n\xEF\xBB\xBF"
                    "c,d\n"),
            (Rows{{"a", "b"},
                  {"\xEF\xBB\xBF"
                   "c",
                   "d"}}));
}

TEST(CsvReaderTest, LastLineWithoutNewline) {
  EXPECT_EQ(ReadAll("a,b\nc,d"), (Rows{{"a", "b"}, {"c", "d"}}));
}

TEST(CsvReaderTest, EmptyInput) {
  EXPECT_TRUE(ReadAll("").empty());
  EXPECT_TRUE(ReadAll("\n\n  \n").empty());
}

TEST(CsvReaderTest, EndOfInputStaysFalse) {
  std::istringstream in("a\n");
  CsvReader reader(in);
  std::vector<std::string> fields;
  ASSERT_TRUE(*reader.Next(&fields));
  EXPECT_THAT(fields, ElementsAre("a"));
  auto end = reader.Next(&fields);
  ASSERT_TRUE(end.ok());
  EXPECT_FALSE(*end);
  end = reader.Next(&fields);
  ASSERT_TRUE(end.ok());
  EXPECT_FALSE(*end);
}

TEST(CsvReaderTest, QuotedFieldsWithCommasAndDoubledQuotes) {
  Rows rows = ReadAll(
      "\"a,b\",\"say \"\"hi\"\"\",plain\n"
      "\"\",\"\"\"\",\"x\"\n");
  EXPECT_EQ(rows, (Rows{{"a,b", "say \"hi\"", "plain"}, {"", "\"", "x"}}));
}

TEST(CsvReaderTest, QuotedFieldKeepsInnerSpaces) {
  EXPECT_EQ(ReadAll("\" a \",b\n"), (Rows{{" a ", "b"}}));
  // Spaces around a quoted field are allowed and dropped.
  EXPECT_EQ(ReadAll("  \"a\"  ,b\n"), (Rows{{"a", "b"}}));
}

TEST(CsvReaderTest, UnquotedFieldsAreTrimmed) {
  EXPECT_EQ(ReadAll(" a , b ,c\n"), (Rows{{"a", "b", "c"}}));
}

TEST(CsvReaderTest, CrLfLineEnds) {
  std::vector<uint64_t> lines;
  Rows rows = ReadAll("imsi,k\r\n001,\"aa\"\r\n\r\n002,bb\r\n", &lines);
  EXPECT_EQ(rows, (Rows{{"imsi", "k"}, {"001", "aa"}, {"002", "bb"}}));
  EXPECT_EQ(lines, (std::vector<uint64_t>{1, 2, 4}));
  // No field keeps a carriage return.
  for (const auto& row : rows) {
    for (const auto& f : row) {
      EXPECT_EQ(f.find('\r'), std::string::npos) << f;
    }
  }
}

TEST(CsvReaderTest, BlankLinesSkippedButCounted) {
  std::vector<uint64_t> lines;
  Rows rows = ReadAll("h1,h2\n\n\na,b\n   \n\t\nc,d\n\n", &lines);
  EXPECT_EQ(rows, (Rows{{"h1", "h2"}, {"a", "b"}, {"c", "d"}}));
  EXPECT_EQ(lines, (std::vector<uint64_t>{1, 4, 7}));
}

TEST(CsvReaderTest, TrailingCommaYieldsEmptyLastField) {
  EXPECT_EQ(ReadAll("a,b,\n"), (Rows{{"a", "b", ""}}));
  EXPECT_EQ(ReadAll("\"a\",\n"), (Rows{{"a", ""}}));
  EXPECT_EQ(ReadAll("a,b,\r\n"), (Rows{{"a", "b", ""}}));
}

TEST(CsvReaderTest, EmptyFields) {
  EXPECT_EQ(ReadAll(",,\n"), (Rows{{"", "", ""}}));
  EXPECT_EQ(ReadAll("a,,b\n"), (Rows{{"a", "", "b"}}));
  EXPECT_EQ(ReadAll(",a\n"), (Rows{{"", "a"}}));
}

TEST(CsvReaderTest, UnterminatedQuoteNamesTheLine) {
  absl::Status s = FirstError("h1,h2\n\na,b\n\"open,c\nd,e\n");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), ContainsRegex("line 4([^0-9]|$)"));
}

TEST(CsvReaderTest, QuotedFieldMayNotSpanLines) {
  absl::Status s = FirstError("\"a\nb\",c\n");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), ContainsRegex("line 1([^0-9]|$)"));
}

TEST(CsvReaderTest, ClosingQuoteThenTextIsAnError) {
  absl::Status s = FirstError("ok\n\"a\"b,c\n");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), ContainsRegex("line 2([^0-9]|$)"));
}

TEST(CsvReaderTest, RecordsBeforeAnErrorAreReturned) {
  std::istringstream in("a,b\nc,\"d\n");
  CsvReader reader(in);
  std::vector<std::string> fields;
  auto first = reader.Next(&fields);
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(*first);
  EXPECT_THAT(fields, ElementsAre("a", "b"));
  EXPECT_FALSE(reader.Next(&fields).ok());
}

TEST(CsvReaderTest, OverlongLineRejected) {
  const std::string max_line(4096, 'a');
  EXPECT_EQ(ReadAll(max_line + "\n"), (Rows{{max_line}}));
  // The CR of a CRLF does not count.
  EXPECT_EQ(ReadAll(max_line + "\r\n"), (Rows{{max_line}}));

  absl::Status s = FirstError("h\n\n" + std::string(4097, 'a') + "\nx\n");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), ContainsRegex("line 3([^0-9]|$)"));

  // Also when the long line is blank or all spaces.
  absl::Status blank = FirstError(std::string(5000, ' ') + "\n");
  EXPECT_FALSE(blank.ok());

  // And when it is very long (no unbounded field).
  absl::Status huge = FirstError("a," + std::string(1 << 20, 'b') + "\n");
  ASSERT_FALSE(huge.ok());
  EXPECT_THAT(std::string(huge.message()), ContainsRegex("line 1([^0-9]|$)"));
}

}  // namespace
}  // namespace simprov
