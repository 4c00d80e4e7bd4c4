// Thread rules, checked. A method documented "I/O thread only" or "not from the I/O thread" states
// its rule with HIVEMIND_CHECK_THREAD_RULE at its top. In builds that define HIVEMIND_CHECK_THREADS
// (debug and sanitizer builds; see HivemindCompilerSettings.cmake) a broken rule aborts with the
// method's name, where it happened, not later as a data race; elsewhere the check compiles to
// nothing, so release hot paths pay nothing.
//
// The definition is private to the targets that check (never part of an installed header's
// meaning), so a consumer built without it links the same library.
#pragma once

namespace hivemind {

// Writes "thread rule broken: <function> must run <rule> (<file>:<line>)" to stderr and aborts.
[[noreturn]] void thread_rule_broken(const char* function, const char* rule, const char* file,
                                     int line);

}  // namespace hivemind

#if defined(HIVEMIND_CHECK_THREADS)
#define HIVEMIND_CHECK_THREAD_RULE(holds, rule)                                                  \
  do {                                                                                           \
    if (!(holds)) ::hivemind::thread_rule_broken(__PRETTY_FUNCTION__, rule, __FILE__, __LINE__); \
  } while (false)
#else
#define HIVEMIND_CHECK_THREAD_RULE(holds, rule) \
  do {                                          \
  } while (false)
#endif
