# The third-party libraries that several targets use, found once. A library that one target
# alone uses is found in that target's CMakeLists.txt (protobuf in proto/, ISA-L, OpenSSL,
# civetweb and prometheus-cpp in common/, cpprestsdk in operator/, GoogleTest in tests/,
# hiredis in bench/). All come from the Debian 12 packages that scripts/bootstrap.sh installs.

find_package(Threads REQUIRED)
find_package(PkgConfig REQUIRED)
find_package(absl CONFIG REQUIRED)          # tw_service, tw_store
find_package(yaml-cpp CONFIG REQUIRED)      # tw_common (config), tw_operator, operator tests
find_package(nlohmann_json CONFIG REQUIRED) # twctl, libtwclient, tw_operator, tw-bench
find_package(CLI11 CONFIG REQUIRED)         # twd, twctl, tw-operator, tw-bench
find_package(fmt CONFIG REQUIRED)           # tw_common (logging through spdlog), its users

# liburing: tw_store's NVMe I/O.
pkg_check_modules(URING REQUIRED IMPORTED_TARGET liburing)
