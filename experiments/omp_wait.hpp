// The OpenMP wait policy dslab runs with: passive unless the user chose.
//
// With libgomp's default (OMP_WAIT_POLICY unset) a thread that reaches a
// barrier spins for about 300,000 pause instructions before it sleeps. On a
// machine whose CPUs other processes also use, the spinning thread burns the
// time slice its descheduled partner needs, and a run with many short parallel
// regions slows down by far more than its share of the CPU (40 tiny training
// steps: 36.8 s by default, 0.91 s passive, on 2 busy cores). So dslab waits
// passively by default.
//
// How: libgomp reads OMP_WAIT_POLICY and GOMP_SPINCOUNT once, in its shared
// library constructor, before main runs, so a setenv in main is too late. A
// setenv in a .preinit_array function (which the dynamic loader runs before
// any library constructor) is lost too: `environ` is still null there and
// libc's own initializer resets it to the process's initial environment
// afterwards. So the program re-executes itself: a program that links this
// unit (it calls omp_wait_policy()) has a .preinit_array entry that, when
// neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT is set, execve()s /proc/self/exe
// with the same argv and the environment plus OMP_WAIT_POLICY=passive and
// DSLAB_DEFAULT_OMP_WAIT_POLICY=passive. That happens before any library is
// initialised (one exec, nothing runs twice), keeps the process id, and cannot
// loop: the new process finds OMP_WAIT_POLICY set. Processes the program starts
// (`dslab run` jobs) inherit the environment. If the exec fails (no /proc),
// the program goes on under libgomp's default.
//
// A user who sets OMP_WAIT_POLICY (active or passive) or GOMP_SPINCOUNT keeps
// that choice; OMP_WAIT_POLICY=active restores libgomp's spinning.
#pragma once

#include <string>

namespace dslab {

// Where the wait policy in effect came from.
enum class OmpWaitSource {
  DslabDefault,    // dslab set OMP_WAIT_POLICY=passive (DSLAB_DEFAULT_OMP_WAIT_POLICY is set)
  User,            // OMP_WAIT_POLICY or GOMP_SPINCOUNT was in the user's environment
  LibgompDefault,  // neither is set: the re-exec did not happen
};

// One line for `dslab --version` and the benchmarks' context, e.g.
// "passive (dslab's default; set OMP_WAIT_POLICY to choose)".
std::string omp_wait_policy();
OmpWaitSource omp_wait_source();

}  // namespace dslab
