// See omp_wait.hpp.
#include "experiments/omp_wait.hpp"

#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace dslab {

namespace {

constexpr const char* kPolicy = "OMP_WAIT_POLICY=passive";
constexpr const char* kMarker = "DSLAB_DEFAULT_OMP_WAIT_POLICY=passive";

// Whether s starts with prefix. Plain loops: before libc's and a sanitizer's
// initialisers nothing that may be intercepted is called.
bool starts_with(const char* s, const char* prefix) {
  for (; *prefix; ++s, ++prefix)
    if (*s != *prefix) return false;
  return true;
}

bool has_name(char** envp, const char* name_eq) {
  for (char** e = envp; e && *e; ++e)
    if (starts_with(*e, name_eq)) return true;
  return false;
}

// Runs before every shared library's constructor, libgomp's included. libc is
// not initialised yet (environ is null), so this reads envp and calls only
// execve; the new environment lives on this stack frame, which execve replaces.
void passive_by_default(int /*argc*/, char** argv, char** envp) {
  if (has_name(envp, "OMP_WAIT_POLICY=") || has_name(envp, "GOMP_SPINCOUNT=")) return;
  size_t n = 0;
  while (envp && envp[n]) ++n;
  char** env = static_cast<char**>(__builtin_alloca((n + 3) * sizeof(char*)));
  size_t k = 0;
  for (size_t i = 0; i < n; ++i)
    if (!starts_with(envp[i], "DSLAB_DEFAULT_OMP_WAIT_POLICY=")) env[k++] = envp[i];
  env[k++] = const_cast<char*>(kPolicy);
  env[k++] = const_cast<char*>(kMarker);
  env[k] = nullptr;
  execve("/proc/self/exe", argv, env);  // returns only on failure: go on with libgomp's default
}

[[gnu::used, gnu::section(".preinit_array")]] void (*const kPassiveByDefault)(int, char**, char**) =
    &passive_by_default;

}  // namespace

OmpWaitSource omp_wait_source() {
  const char* policy = std::getenv("OMP_WAIT_POLICY");
  const char* marker = std::getenv("DSLAB_DEFAULT_OMP_WAIT_POLICY");
  if (policy && marker && std::strcmp(policy, "passive") == 0) return OmpWaitSource::DslabDefault;
  if (policy || std::getenv("GOMP_SPINCOUNT")) return OmpWaitSource::User;
  return OmpWaitSource::LibgompDefault;
}

std::string omp_wait_policy() {
  switch (omp_wait_source()) {
    case OmpWaitSource::DslabDefault:
      return "passive (dslab's default; set OMP_WAIT_POLICY to choose)";
    case OmpWaitSource::User: {
      std::string s;
      if (const char* p = std::getenv("OMP_WAIT_POLICY")) s = std::string("OMP_WAIT_POLICY=") + p;
      if (const char* c = std::getenv("GOMP_SPINCOUNT"))
        s += (s.empty() ? "" : ", ") + std::string("GOMP_SPINCOUNT=") + c;
      return s + " (from the environment)";
    }
    case OmpWaitSource::LibgompDefault:
      break;
  }
  return "libgomp's default: spin, then sleep (re-executing with OMP_WAIT_POLICY=passive failed)";
}

}  // namespace dslab
