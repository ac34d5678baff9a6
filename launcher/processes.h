// What the launcher reads of other processes in /proc: their state, start time and children.
#pragma once

#include <sys/types.h>

#include <optional>
#include <vector>

namespace weft {

// From /proc/<pid>/stat: the state letter (R, S, T for stopped, Z for a zombie) and the start time, which tells a
// process from a later one that reuses its pid.
struct ProcStat {
  char state = '?';
  unsigned long long start = 0;
};
std::optional<ProcStat> proc_stat(pid_t pid);

// Children of `pid`, from /proc/<pid>/task/*/children (each thread lists those it forked).
std::vector<pid_t> children_of(pid_t pid);

}  // namespace weft
