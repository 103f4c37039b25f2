# include(tffreeze) (or find_package(tffreeze)): freeze a TensorFlow checkpoint as a build step.
#
#   tffreeze_freeze(TARGET model SOURCE runs/mnist OUTPUT ${CMAKE_BINARY_DIR}/mnist.pb
#                   [MANIFEST ${CMAKE_BINARY_DIR}/mnist.json] [OPTIONS --target tensorflowsharp ...])
#
# adds a target (built by default) that runs `tffreeze-cpp freeze SOURCE -o OUTPUT ...`
# against the tffreeze server at TFFREEZE_SERVER (this cache variable, else the
# environment's $TFFREEZE_SERVER at build time, else the user's local server, started on
# demand and kept warm, so a build freezing many models loads TensorFlow once). The step depends
# on every file under SOURCE (re-globbed when files appear or go), on a listing of their names,
# sizes and mtimes taken at every build (tffreeze_stamp.cmake: a deleted checkpoint or an older
# copy restored changes it) and on the options, so a build re-freezes only when the checkpoint
# or the options changed; and when a changed
# file still gives the same graph, the client leaves OUTPUT as it was (no download).
# OPTIONS are tffreeze-cpp freeze's flags (--outputs, --inputs, --step, --target, --tls,
# --ca, --token, --timeout, ...).
set(TFFREEZE_SERVER "" CACHE STRING "tffreeze server for tffreeze_freeze() (HOST:PORT; empty: $TFFREEZE_SERVER)")
if(NOT TFFREEZE_CPP_EXECUTABLE)
  find_program(TFFREEZE_CPP_EXECUTABLE tffreeze-cpp HINTS "${CMAKE_CURRENT_LIST_DIR}/../bin")
endif()

set(_TFFREEZE_CMAKE_DIR "${CMAKE_CURRENT_LIST_DIR}")

function(tffreeze_freeze)
  cmake_parse_arguments(TF "" "TARGET;SOURCE;OUTPUT;MANIFEST" "OPTIONS" ${ARGN})
  foreach(required TARGET SOURCE OUTPUT)
    if(NOT TF_${required})
      message(FATAL_ERROR "tffreeze_freeze: ${required} is required")
    endif()
  endforeach()
  if(NOT TFFREEZE_CPP_EXECUTABLE)
    message(FATAL_ERROR "tffreeze_freeze: tffreeze-cpp not found (build it with `make cpp`, or set TFFREEZE_CPP_EXECUTABLE)")
  endif()
  get_filename_component(source "${TF_SOURCE}" ABSOLUTE)
  get_filename_component(output "${TF_OUTPUT}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_BINARY_DIR}")
  if(IS_DIRECTORY "${source}")
    file(GLOB_RECURSE inputs CONFIGURE_DEPENDS LIST_DIRECTORIES false "${source}/*")
  else()  # a checkpoint prefix: its files and the folder's state file
    get_filename_component(folder "${source}" DIRECTORY)
    file(GLOB inputs CONFIGURE_DEPENDS "${source}.*" "${folder}/checkpoint")
    if(NOT inputs)
      message(FATAL_ERROR "tffreeze_freeze: ${TF_SOURCE} is neither a folder nor a checkpoint prefix")
    endif()
  endif()
  set(command "${TFFREEZE_CPP_EXECUTABLE}" freeze "${source}" -o "${output}" --quiet)
  set(outputs "${output}")
  if(TF_MANIFEST)
    get_filename_component(manifest "${TF_MANIFEST}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_BINARY_DIR}")
    list(APPEND command --manifest "${manifest}")
    list(APPEND outputs "${manifest}")
  endif()
  if(TFFREEZE_SERVER)
    list(APPEND command --server "${TFFREEZE_SERVER}")
  endif()
  list(APPEND command ${TF_OPTIONS})
  # The command line, rewritten only when it changes: changed options re-freeze.
  set(stamp "${CMAKE_CURRENT_BINARY_DIR}/tffreeze/${TF_TARGET}.command")
  string(REPLACE ";" "\n" command_text "${command}")
  file(CONFIGURE OUTPUT "${stamp}" CONTENT "${command_text}\n")
  # The files the freeze reads, listed with their sizes and mtimes at every build (no server
  # contacted): a checkpoint deleted or restored from an older copy changes the listing, and
  # that re-freezes, as a newer file does.
  set(listing "${CMAKE_CURRENT_BINARY_DIR}/tffreeze/${TF_TARGET}.inputs")
  add_custom_target(${TF_TARGET}_inputs
    COMMAND "${CMAKE_COMMAND}" "-DSOURCE=${source}" "-DSTAMP=${listing}" -P "${_TFFREEZE_CMAKE_DIR}/tffreeze_stamp.cmake"
    BYPRODUCTS "${listing}"
    VERBATIM)
  add_custom_command(
    OUTPUT ${outputs}
    COMMAND ${command}
    DEPENDS ${inputs} "${stamp}" "${listing}" "${TFFREEZE_CPP_EXECUTABLE}"
    COMMENT "tffreeze: freezing ${TF_SOURCE} -> ${TF_OUTPUT}"
    VERBATIM)
  add_custom_target(${TF_TARGET} ALL DEPENDS ${outputs})
  add_dependencies(${TF_TARGET} ${TF_TARGET}_inputs)
endfunction()
