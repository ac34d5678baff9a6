#include "launcher/processes.h"

#include <dirent.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>

#include <fmt/format.h>

namespace weft {

std::optional<ProcStat> proc_stat(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string text;
  if (!std::getline(in, text)) return std::nullopt;
  const std::size_t name_end = text.rfind(')');  // the command name may itself hold spaces and parentheses
  if (name_end == std::string::npos || name_end + 2 > text.size()) return std::nullopt;
  std::istringstream fields(text.substr(name_end + 2));
  ProcStat stat;
  fields >> stat.state;
  std::string skipped;
  for (int field = 4; field < 22; ++field) fields >> skipped;
  fields >> stat.start;
  return stat;
}

std::vector<pid_t> children_of(pid_t pid) {
  std::vector<pid_t> children;
  const std::string tasks = fmt::format("/proc/{}/task", pid);
  if (DIR* dir = opendir(tasks.c_str())) {
    while (const dirent* entry = readdir(dir)) {
      if (entry->d_name[0] == '.') continue;
      std::ifstream in(fmt::format("{}/{}/children", tasks, entry->d_name));
      for (long child; in >> child;) children.push_back(static_cast<pid_t>(child));
    }
    closedir(dir);
  }
  std::sort(children.begin(), children.end());
  children.erase(std::unique(children.begin(), children.end()), children.end());
  return children;
}

}  // namespace weft
