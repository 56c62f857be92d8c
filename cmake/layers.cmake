# sprig's layers: one folder, one static library each, in one direction
#
#   core -> gen -> exec -> model -> backend -> tuner -> cli
#
# sprig_layer(NAME SOURCES ... [BELOW layer] [LIBS ...] [PRIVATE_LIBS ...])
# builds the folder NAME/ into the library sprig_NAME, which links only the
# layer below it (and through it everything further down). Two things keep a
# layer from reaching up or in:
#   - include paths: a layer sees its own folder and the folders below it, so
#     an upward #include does not compile (scripts/check-layers.sh also
#     checks the sources and the link lines, for CI);
#   - visibility: sources are compiled with -fvisibility=hidden; only what a
#     layer's interface headers declare inside `#pragma GCC visibility
#     push(default)` is exported. The layer's objects are combined with
#     `ld -r` and every hidden symbol made local (`objcopy --localize-hidden`),
#     so a layer above that calls a function the layer did not export fails
#     to link, exactly as it would against a shared library.
# sprig_NAME_objects, the same code unlinked, is for the white-box tests.
function(sprig_layer name)
  cmake_parse_arguments(L "" "BELOW" "SOURCES;LIBS;PRIVATE_LIBS;INCLUDES" ${ARGN})
  set(objects sprig_${name}_objects)
  add_library(${objects} OBJECT ${L_SOURCES})
  set_target_properties(${objects} PROPERTIES C_VISIBILITY_PRESET hidden CXX_VISIBILITY_PRESET hidden
                                              POSITION_INDEPENDENT_CODE ON)
  target_include_directories(${objects} PUBLIC ${CMAKE_SOURCE_DIR}/${name} ${L_INCLUDES})
  target_link_libraries(${objects} PUBLIC ${L_LIBS} PRIVATE ${L_PRIVATE_LIBS})
  if(L_BELOW)
    target_link_libraries(${objects} PUBLIC sprig_${L_BELOW}_objects)
  endif()

  set(merged ${CMAKE_CURRENT_BINARY_DIR}/sprig_${name}.o)
  add_custom_command(
    OUTPUT ${merged}
    COMMAND ${CMAKE_LINKER} -r -o ${merged} $<TARGET_OBJECTS:${objects}>
    COMMAND ${CMAKE_OBJCOPY} --localize-hidden ${merged}
    DEPENDS $<TARGET_OBJECTS:${objects}>
    COMMAND_EXPAND_LISTS VERBATIM
    COMMENT "Layer ${name}: merging its objects, hiding what it does not export")
  set_source_files_properties(${merged} PROPERTIES EXTERNAL_OBJECT TRUE GENERATED TRUE)
  add_library(sprig_${name} STATIC ${merged})
  add_dependencies(sprig_${name} ${objects}) # the objects must exist before ld -r merges them
  set_target_properties(sprig_${name} PROPERTIES LINKER_LANGUAGE C)
  target_include_directories(sprig_${name} INTERFACE ${CMAKE_SOURCE_DIR}/${name} ${L_INCLUDES})
  target_link_libraries(sprig_${name} INTERFACE ${L_LIBS} ${L_PRIVATE_LIBS})
  if(L_BELOW)
    target_link_libraries(sprig_${name} INTERFACE sprig_${L_BELOW})
  endif()
endfunction()
