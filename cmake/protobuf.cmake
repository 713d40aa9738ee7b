# rkv_protobuf_c(TARGET proto_file...)
#
# Generates C sources with protoc-c at build time (generated files are never
# committed) and builds them into a static library TARGET whose include path
# reaches the generated headers as "<module>/<name>.pb-c.h".
function(rkv_protobuf_c target)
    set(sources "")
    foreach(proto ${ARGN})
        get_filename_component(abs ${proto} ABSOLUTE)
        file(RELATIVE_PATH rel ${CMAKE_SOURCE_DIR} ${abs})
        string(REGEX REPLACE "\\.proto$" "" stem ${rel})
        set(out_c ${CMAKE_BINARY_DIR}/gen/${stem}.pb-c.c)
        set(out_h ${CMAKE_BINARY_DIR}/gen/${stem}.pb-c.h)
        add_custom_command(
            OUTPUT ${out_c} ${out_h}
            COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/gen
            COMMAND ${PROTOC_C} --proto_path=${CMAKE_SOURCE_DIR}
                    --c_out=${CMAKE_BINARY_DIR}/gen ${rel}
            DEPENDS ${abs}
            WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}
            COMMENT "protoc-c ${rel}")
        list(APPEND sources ${out_c})
    endforeach()
    add_library(${target} STATIC ${sources})
    # Generated code is not ours to fix; keep its warnings out of -Werror.
    target_compile_options(${target} PRIVATE -w)
    target_include_directories(${target} PUBLIC ${CMAKE_BINARY_DIR}/gen)
    target_link_libraries(${target} PUBLIC PkgConfig::PROTOBUFC)
endfunction()
