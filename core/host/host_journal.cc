#include "core/host/host_journal.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/host/errno_error.h"
#include "core/host/unique_fd.h"
#include "core/status_macros.h"
#include "core/sync.h"

namespace iommud {
namespace host {
namespace {

constexpr char kHeader[] = "iommud-host-journal 1";
constexpr char kEmpty[] = "-";  // an empty driver or override

std::string Word(const std::string& value) { return value.empty() ? kEmpty : value; }
std::string Unword(absl::string_view word) { return word == kEmpty ? "" : std::string(word); }

absl::Status JournalError(const std::string& path, const std::string& what, int err = 0) {
  if (err != 0) {
    return ErrnoError(absl::StatusCode::kInternal, reason::kHostJournalFailed,
                      absl::StrCat("host journal ", path, ": ", what), err, {{"path", path}});
  }
  return Error(absl::StatusCode::kInternal, reason::kHostJournalFailed,
               absl::StrCat("host journal ", path, ": ", what), {{"path", path}});
}

// The whole file, or NOT_FOUND-free "" with *exists false.
absl::StatusOr<std::string> ReadWhole(const std::string& path, bool* exists) {
  *exists = false;
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ENOENT) return std::string();
    return JournalError(path, "cannot open", errno);
  }
  *exists = true;
  std::string text;
  char buffer[4096];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return JournalError(path, "cannot read", errno);
    if (n == 0) break;
    text.append(buffer, static_cast<size_t>(n));
  }
  return text;
}

absl::Status WriteAll(int fd, const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::InternalError("write");
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

std::string FormatHostJournal(const std::string& boot_id,
                              const std::map<int, JournaledGroup>& records) {
  std::string text = absl::StrCat(kHeader, "\nboot ", Word(boot_id), "\n");
  for (const auto& [id, record] : records) {
    absl::StrAppend(&text, "group ", id, " ",
                    record.phase == JournaledGroup::Phase::kClaimed ? "claimed" : "binding", "\n");
    for (const DriverBinding& binding : record.bindings) {
      absl::StrAppend(&text, "bind ", id, " ", binding.device, " ", binding.changed ? 1 : 0, " ",
                      Word(binding.previous_driver), " ", Word(binding.previous_override), "\n");
    }
  }
  absl::StrAppend(&text, "end\n");
  return text;
}

absl::Status ParseHostJournal(const std::string& text, std::string* boot_id,
                              std::map<int, JournaledGroup>* records) {
  records->clear();
  boot_id->clear();
  std::vector<std::string> lines = absl::StrSplit(text, '\n', absl::SkipEmpty());
  if (lines.empty() || lines.front() != kHeader) {
    return absl::InvalidArgumentError("no journal header");
  }
  bool ended = false;
  for (size_t i = 1; i < lines.size(); ++i) {
    std::vector<std::string> words = absl::StrSplit(lines[i], ' ', absl::SkipEmpty());
    if (ended || words.empty()) return absl::InvalidArgumentError("text after the end line");
    int group = -1;
    if (words[0] == "boot" && words.size() == 2) {
      *boot_id = Unword(words[1]);
    } else if (words[0] == "group" && words.size() == 3 && absl::SimpleAtoi(words[1], &group) &&
               (words[2] == "claimed" || words[2] == "binding")) {
      JournaledGroup& record = (*records)[group];
      record.group = group;
      record.phase = words[2] == "claimed" ? JournaledGroup::Phase::kClaimed
                                           : JournaledGroup::Phase::kBinding;
    } else if (words[0] == "bind" && words.size() == 6 && absl::SimpleAtoi(words[1], &group) &&
               records->count(group) != 0 && (words[3] == "0" || words[3] == "1")) {
      DriverBinding binding;
      binding.device = words[2];
      binding.changed = words[3] == "1";
      binding.previous_driver = Unword(words[4]);
      binding.previous_override = Unword(words[5]);
      (*records)[group].bindings.push_back(std::move(binding));
    } else if (words[0] == "end" && words.size() == 1) {
      ended = true;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("bad line '", lines[i], "'"));
    }
  }
  // Written whole and renamed into place: a file without its end line is not ours.
  if (!ended) return absl::InvalidArgumentError("no end line");
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<HostJournal>> HostJournal::Open(const std::string& dir,
                                                                const std::string& boot_id_path) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return JournalError(dir, "cannot create the directory", errno);
  }
  std::string boot_id;
  if (!boot_id_path.empty()) {
    bool exists = false;
    ASSIGN_OR_RETURN(std::string text, ReadWhole(boot_id_path, &exists));
    boot_id = std::string(absl::StripAsciiWhitespace(text));
    if (boot_id.empty()) return JournalError(boot_id_path, "no boot id");
  }
  const std::string path = absl::StrCat(dir, "/host-journal");
  std::unique_ptr<HostJournal> journal(new HostJournal(path, boot_id));
  bool exists = false;
  ASSIGN_OR_RETURN(std::string text, ReadWhole(path, &exists));
  if (exists) {
    std::string written_boot;
    std::map<int, JournaledGroup> records;
    const absl::Status parsed = ParseHostJournal(text, &written_boot, &records);
    if (!parsed.ok()) return JournalError(path, std::string(parsed.message()));
    if (written_boot == boot_id) {
      journal->previous_ = std::move(records);
    } else {
      journal->discarded_other_boot_ = true;
    }
  }
  MutexLock lock(&journal->mu_);
  journal->records_ = journal->previous_;
  RETURN_IF_ERROR(journal->WriteLocked());  // the file is writable, and of this boot
  return journal;
}

absl::Status HostJournal::Put(const JournaledGroup& group) {
  MutexLock lock(&mu_);
  const std::map<int, JournaledGroup> before = records_;
  records_[group.group] = group;
  absl::Status written = WriteLocked();
  if (!written.ok()) records_ = before;
  return written;
}

absl::Status HostJournal::Remove(int group) {
  MutexLock lock(&mu_);
  auto it = records_.find(group);
  if (it == records_.end()) return absl::OkStatus();
  const JournaledGroup removed = it->second;
  records_.erase(it);
  absl::Status written = WriteLocked();
  if (!written.ok()) records_[group] = removed;
  return written;
}

std::map<int, JournaledGroup> HostJournal::Current() const {
  MutexLock lock(&mu_);
  return records_;
}

absl::Status HostJournal::WriteLocked() {
  const std::string temporary = absl::StrCat(path_, ".tmp");
  UniqueFd fd(::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd.valid()) return JournalError(temporary, "cannot create", errno);
  if (!WriteAll(fd.get(), FormatHostJournal(boot_id_, records_)).ok()) {
    return JournalError(temporary, "cannot write", errno);
  }
  if (::fsync(fd.get()) != 0) return JournalError(temporary, "cannot fsync", errno);
  fd.Reset();
  if (::rename(temporary.c_str(), path_.c_str()) != 0) {
    return JournalError(path_, "cannot rename into place", errno);
  }
  return absl::OkStatus();
}

}  // namespace host
}  // namespace iommud
