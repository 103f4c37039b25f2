# cmake -DSOURCE=<folder or checkpoint prefix> -DSTAMP=<file> -P tffreeze_stamp.cmake
#
# Run by tffreeze_freeze() at every build, with no server and no TensorFlow: lists the files a
# freeze of SOURCE reads (name, size, mtime) and rewrites STAMP only when that list changed, so
# a checkpoint deleted, added, or restored from an older copy re-freezes, and an unchanged one
# does not.
if(IS_DIRECTORY "${SOURCE}")
  file(GLOB_RECURSE files LIST_DIRECTORIES false RELATIVE "${SOURCE}" "${SOURCE}/*")
  set(base "${SOURCE}")
else()
  get_filename_component(base "${SOURCE}" DIRECTORY)
  get_filename_component(name "${SOURCE}" NAME)
  file(GLOB files RELATIVE "${base}" "${SOURCE}.*" "${base}/checkpoint")
endif()
list(SORT files)
set(listing "")
foreach(f IN LISTS files)
  file(SIZE "${base}/${f}" size)
  file(TIMESTAMP "${base}/${f}" mtime "%Y-%m-%dT%H:%M:%S" UTC)
  string(APPEND listing "${f}\t${size}\t${mtime}\n")
endforeach()
set(old "")
if(EXISTS "${STAMP}")
  file(READ "${STAMP}" old)
endif()
if(NOT old STREQUAL listing)
  file(WRITE "${STAMP}" "${listing}")
endif()
