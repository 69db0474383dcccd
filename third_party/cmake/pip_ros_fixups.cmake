# Injected with -DCMAKE_PROJECT_INCLUDE=<this file> by scripts/setup_ros_env.sh when an interface
# package is built against the ROS 2 wheels from PyPI (ros-*, "pip route"); not used by an apt/colcon
# install of ROS 2.
#
# Why: the wheels were built in a manylinux container whose Python lived in /opt/python/cp311-cp311.
# Their exported CMake targets <pkg>::<pkg>__rosidl_generator_py carry that machine's Python and NumPy
# include directories as absolute paths in INTERFACE_INCLUDE_DIRECTORIES, and CMake refuses to
# generate a build that links an imported target with a non-existent include directory.
#
# What: once the top-level CMakeLists.txt has been processed (cmake_language(DEFER), so every
# find_package() has run), every imported target in that directory whose include directories name a
# path that does not exist gets those entries replaced by this interpreter's Python and NumPy include
# directories (for the python/numpy ones) or dropped (anything else). Nothing outside the build tree
# is written; the wheel files themselves stay untouched.
cmake_minimum_required(VERSION 3.19)  # cmake_language(DEFER)

if(NOT COMMAND _pip_ros_fix_imported_include_dirs)
  function(_pip_ros_fix_imported_include_dirs)
    get_directory_property(_targets DIRECTORY "${CMAKE_SOURCE_DIR}" IMPORTED_TARGETS)
    set(_py_inc "")
    set(_np_inc "")
    set(_looked_up FALSE)
    foreach(_t IN LISTS _targets)
      get_target_property(_dirs "${_t}" INTERFACE_INCLUDE_DIRECTORIES)
      if(NOT _dirs)
        continue()
      endif()
      set(_new "")
      set(_changed FALSE)
      foreach(_d IN LISTS _dirs)
        if(_d MATCHES "^\\$<" OR EXISTS "${_d}")
          list(APPEND _new "${_d}")
          continue()
        endif()
        set(_changed TRUE)
        if(NOT _looked_up)
          find_package(Python3 REQUIRED COMPONENTS Interpreter Development.Module NumPy)
          set(_py_inc ${Python3_INCLUDE_DIRS})
          set(_np_inc ${Python3_NumPy_INCLUDE_DIRS})
          set(_looked_up TRUE)
        endif()
        if(_d MATCHES "/numpy/")
          list(APPEND _new ${_np_inc})
        elseif(_d MATCHES "/include/python[0-9]")
          list(APPEND _new ${_py_inc})
        endif()  # any other missing directory is dropped
      endforeach()
      if(_changed)
        list(REMOVE_DUPLICATES _new)
        set_target_properties("${_t}" PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_new}")
        message(STATUS "pip_ros_fixups: ${_t}: include dirs -> ${_new}")
      endif()
    endforeach()
  endfunction()
endif()

if(CMAKE_CURRENT_SOURCE_DIR STREQUAL CMAKE_SOURCE_DIR)
  cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL _pip_ros_fix_imported_include_dirs)
endif()
