# Writes OUT from IN with DSLAB_VERSION and DSLAB_GIT_COMMIT (the current commit,
# "-dirty" when tracked files differ from it). Run at every build, so the commit
# recorded in result files is the one the program was built from; the header is
# rewritten only when the text changes, so an unchanged tree rebuilds nothing.
execute_process(COMMAND git rev-parse --short=12 HEAD
                WORKING_DIRECTORY ${SOURCE_DIR}
                OUTPUT_VARIABLE DSLAB_GIT_COMMIT OUTPUT_STRIP_TRAILING_WHITESPACE
                ERROR_QUIET)
execute_process(COMMAND git status --porcelain --untracked-files=no
                WORKING_DIRECTORY ${SOURCE_DIR}
                OUTPUT_VARIABLE DSLAB_GIT_DIRTY OUTPUT_STRIP_TRAILING_WHITESPACE
                ERROR_QUIET)
if(NOT DSLAB_GIT_COMMIT)
  set(DSLAB_GIT_COMMIT "unknown")
elseif(DSLAB_GIT_DIRTY)
  set(DSLAB_GIT_COMMIT "${DSLAB_GIT_COMMIT}-dirty")
endif()
set(PROJECT_VERSION ${DSLAB_VERSION})
configure_file(${IN} ${OUT} @ONLY)
