// Helpers shared by the software backend tests.
#ifndef IOMMUD_TESTS_CORE_BACKEND_SOFTWARE_SOFTWARE_TEST_UTIL_H_
#define IOMMUD_TESTS_CORE_BACKEND_SOFTWARE_SOFTWARE_TEST_UTIL_H_

#include <cstdint>
#include <memory>
#include <ostream>
#include <tuple>

#include "core/backend/software/software_backend.h"
#include "core/types.h"
#include "gtest/gtest.h"

namespace iommud {

inline bool operator==(const Mapping& a, const Mapping& b) {
  return std::tie(a.iova, a.paddr, a.size, a.prot) == std::tie(b.iova, b.paddr, b.size, b.prot);
}
inline std::ostream& operator<<(std::ostream& os, const Mapping& m) {
  return os << "{iova=0x" << std::hex << m.iova << " paddr=0x" << m.paddr << " size=0x" << m.size
            << std::dec << " prot=" << m.prot << "}";
}
inline bool operator==(const RidEntry& a, const RidEntry& b) {
  return a.rid == b.rid && a.domain == b.domain;
}
inline std::ostream& operator<<(std::ostream& os, const RidEntry& e) {
  return os << "{rid=" << e.rid << " domain=" << e.domain << "}";
}

// A fresh software backend with unit "u0" (default caps).
inline std::unique_ptr<IommuBackend> NewBackendWithUnit(const UnitCaps& caps = UnitCaps()) {
  std::unique_ptr<IommuBackend> backend = NewSoftwareBackend({}).value();
  EXPECT_TRUE(backend->AddUnit("u0", caps).ok());
  return backend;
}

}  // namespace iommud

#endif  // IOMMUD_TESTS_CORE_BACKEND_SOFTWARE_SOFTWARE_TEST_UTIL_H_
