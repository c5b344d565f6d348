#!/bin/sh
# Fails when one of the given files (twd's service core and the headers it includes) names a
# generated protobuf type or header: the Unix-socket codec is the only translator.
if grep -nE 'pb\.h|google/protobuf|tw/protocol/(messages|wire_enums)\.h|pb::' "$@"; then
  echo "the service core must not depend on generated protobuf code (see the lines above)" >&2
  exit 1
fi
exit 0
