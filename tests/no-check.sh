#!/bin/sh
# make check when configure did not find Check: say so, and fail (the
# unit tests are part of the suite; a run without them proves less).
echo "make check: the unit tests need Check (the Debian package check): install it, then run ./configure again" >&2
exit 99
