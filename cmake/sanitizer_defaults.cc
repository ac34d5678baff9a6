// Linked into every executable of a -DWEFT_SANITIZE=ON build: LeakSanitizer suppressions for what Open MPI and
// its plugins allocate once and never free, so a leak report is always weft's own. Allocation stacks are
// unwound fully (Open MPI is built without frame pointers) so that the suppressions can see libmpi's frames.
extern "C" const char* __asan_default_options() { return "fast_unwind_on_malloc=0"; }
extern "C" const char* __lsan_default_suppressions() {
  return "leak:libmpi\nleak:libopen-pal\nleak:libopen-rte\nleak:libpmix\nleak:libhwloc\nleak:libevent\n"
         "leak:mca_\nleak:__vasprintf_internal\n";
}
