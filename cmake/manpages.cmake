# Man pages (help2man, from each binary's --help and --version) and the
# bash and zsh completion scripts (from `NAME completion SHELL`), generated
# at build time and installed with the binaries. Skipped in sanitizer builds
# (running instrumented binaries at build time buys nothing) and, with a
# warning, when help2man is missing (scripts/deps installs it).
if(SIMPROV_SANITIZE)
  return()
endif()
find_program(HELP2MAN help2man)
set(_simprov_generated)
set(_simprov_descriptions
  "simprov-broker|SIM-authenticated device provisioning service"
  "simprov|operate a simprov broker"
  "simprov-agent|provision this device with its SIM")
foreach(_entry IN LISTS _simprov_descriptions)
  string(REPLACE "|" ";" _parts "${_entry}")
  list(GET _parts 0 _bin)
  list(GET _parts 1 _what)
  set(_bash ${PROJECT_BINARY_DIR}/completion/${_bin})
  set(_zsh ${PROJECT_BINARY_DIR}/completion/_${_bin})
  add_custom_command(OUTPUT ${_bash} ${_zsh}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${PROJECT_BINARY_DIR}/completion
    COMMAND sh -c "\"$1\" completion bash > \"$2\" && \"$1\" completion zsh > \"$3\""
      sh $<TARGET_FILE:${_bin}> ${_bash} ${_zsh}
    DEPENDS ${_bin} VERBATIM)
  list(APPEND _simprov_generated ${_bash} ${_zsh})
  install(FILES ${_bash}
    DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions)
  install(FILES ${_zsh}
    DESTINATION ${CMAKE_INSTALL_DATADIR}/zsh/vendor-completions)
  if(HELP2MAN)
    set(_man ${PROJECT_BINARY_DIR}/man/${_bin}.1)
    add_custom_command(OUTPUT ${_man}
      COMMAND ${CMAKE_COMMAND} -E make_directory ${PROJECT_BINARY_DIR}/man
      COMMAND ${HELP2MAN} --no-info --no-discard-stderr --name ${_what}
        --output ${_man} $<TARGET_FILE:${_bin}>
      DEPENDS ${_bin} VERBATIM)
    list(APPEND _simprov_generated ${_man})
    install(FILES ${_man} DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
  endif()
endforeach()
if(NOT HELP2MAN)
  message(WARNING "help2man not found: no man pages (run scripts/deps)")
endif()
add_custom_target(simprov_manpages_and_completion ALL
  DEPENDS ${_simprov_generated})
