# libprobmoe.a for users (target probmoe_static): it exposes only the pm_ symbols.
#
# Hidden visibility only affects dynamic linking: in an ordinary archive the internal
# functions (sort_pairs, matmul_forward, ...) stay global and would clash with a user's own.
# So all library objects are linked into one relocatable object (ld -r resolves the internal
# references between them), objcopy --localize-hidden turns every hidden global into a local
# symbol, and the archive holds that single object.
foreach(tool CMAKE_LINKER CMAKE_OBJCOPY CMAKE_AR)
  if(NOT ${tool})
    message(FATAL_ERROR "${tool} not found: the public static library needs binutils (ld, objcopy, ar)")
  endif()
endforeach()

set(PM_STATIC_ARCHIVE ${CMAKE_CURRENT_BINARY_DIR}/${CMAKE_STATIC_LIBRARY_PREFIX}probmoe${CMAKE_STATIC_LIBRARY_SUFFIX})
set(pm_merged_object ${CMAKE_CURRENT_BINARY_DIR}/probmoe_static.dir/probmoe.o)
add_custom_command(
  OUTPUT ${PM_STATIC_ARCHIVE}
  COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_CURRENT_BINARY_DIR}/probmoe_static.dir
  COMMAND ${CMAKE_LINKER} -r -o ${pm_merged_object} $<TARGET_OBJECTS:probmoe_objects>
  COMMAND ${CMAKE_OBJCOPY} --localize-hidden ${pm_merged_object}
  # ar would otherwise keep members of an older archive
  COMMAND ${CMAKE_COMMAND} -E rm -f ${PM_STATIC_ARCHIVE}
  COMMAND ${CMAKE_AR} rcs ${PM_STATIC_ARCHIVE} ${pm_merged_object}
  DEPENDS probmoe_objects $<TARGET_OBJECTS:probmoe_objects>
  COMMENT "Linking the public static library libprobmoe.a (pm_ symbols only)"
  COMMAND_EXPAND_LISTS VERBATIM)
add_custom_target(probmoe_static ALL DEPENDS ${PM_STATIC_ARCHIVE})
