// Table: left-aligned text columns for iommuctl's human-readable output.
#ifndef IOMMUD_CLIENTS_IOMMUCTL_TABLE_H_
#define IOMMUD_CLIENTS_IOMMUCTL_TABLE_H_

#include <string>
#include <vector>

namespace iommud {

class Table {
 public:
  explicit Table(std::vector<std::string> headers) : headers_(std::move(headers)) {}
  // Missing cells are empty; extra cells are an error in the caller (ignored).
  void AddRow(std::vector<std::string> cells);
  size_t rows() const { return rows_.size(); }
  // Header line then one line per row; columns separated by two spaces, no trailing spaces.
  std::string Render() const;

 private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace iommud

#endif  // IOMMUD_CLIENTS_IOMMUCTL_TABLE_H_
