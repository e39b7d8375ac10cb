#!/usr/bin/env bash
# Fetch precimed's built-in image sets once, at install or test time (nothing downloads at run time).
#
#  1. pyradiomics: the pyradiomics 3.1.0 source distribution, by its own link on the package index's simple page
#     (https://pypi.org/simple/pyradiomics/, or $PIP_INDEX_URL/pyradiomics/ when PIP_INDEX_URL is set), checked
#     against its sha256; only pyradiomics-3.1.0/data/*.nrrd and data/README.md are extracted, into
#     ${PRECIMED_IMAGE_DATA:-$HOME/.cache/precimed/images}. (pip cannot fetch it by version: the sdist's own
#     metadata says 3.0.1a1, so the resolver skips it when asked for pyradiomics==3.1.0.)
#  2. colin27 / invesalius_ct: the Debian packages mricron-data and invesalius-examples, when missing and when
#     run as root (apt-get update only if the first install fails).
#
# Idempotent: what is already there is kept. Prints one line per source; exits non-zero on a hash mismatch.
set -euo pipefail

SDIST=pyradiomics-3.1.0.tar.gz
SHA256=24722c962a6bbd09bc39c1c67dbffe92435f9692a421fabaae8a6b4511eb48e4
DEST="${PRECIMED_IMAGE_DATA:-$HOME/.cache/precimed/images}"
INDEX="${PIP_INDEX_URL:-https://pypi.org/simple}"
INDEX="${INDEX%/}"
PYTHON="${PYTHON:-python3}"
status=0

fetch_pyradiomics() {
    local data="$DEST/pyradiomics-3.1.0/data"
    if [ -f "$data/brain1_image.nrrd" ] && [ -f "$data/lung2_label.nrrd" ] && [ "$(ls "$data"/*.nrrd | wc -l)" -eq 10 ]; then
        echo "pyradiomics: present in $data"
        return 0
    fi
    mkdir -p "$DEST"
    local tmp
    tmp="$(mktemp -d)"
    # shellcheck disable=SC2064
    trap "rm -rf '$tmp'" RETURN
    # Find the sdist's link on the simple page (relative links resolved against the page), download, check, extract.
    "$PYTHON" - "$INDEX/pyradiomics/" "$SDIST" "$SHA256" "$tmp" "$DEST" <<'PY'
import hashlib
import re
import sys
import tarfile
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urldefrag, urljoin

page, sdist, expected, tmp, dest = sys.argv[1:6]


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.hrefs += [v for k, v in attrs if k == "href" and v]


request = urllib.request.Request(page, headers={"Accept": "text/html"})
parser = Links()
try:
    with urllib.request.urlopen(request, timeout=60) as response:
        parser.feed(response.read().decode("utf-8", "replace"))
except OSError as exc:  # URLError, HTTPError and timeouts are OSErrors
    sys.exit(f"pyradiomics: cannot read the package index page {page}: {exc}")
urls = [urljoin(page, h) for h in parser.hrefs if urldefrag(h)[0].rstrip("/").endswith("/" + sdist)
        or urldefrag(h)[0] == sdist]
if not urls:
    sys.exit(f"pyradiomics: no link to {sdist} on {page}")
target = Path(tmp) / sdist
try:
    with urllib.request.urlopen(urldefrag(urls[0])[0], timeout=300) as response, target.open("wb") as out:
        while chunk := response.read(1 << 20):
            out.write(chunk)
except OSError as exc:
    sys.exit(f"pyradiomics: cannot download {urldefrag(urls[0])[0]}: {exc}")
digest = hashlib.sha256(target.read_bytes()).hexdigest()
if digest != expected:
    sys.exit(f"pyradiomics: sha256 mismatch for {sdist}: got {digest}, expected {expected}; nothing extracted")
wanted = re.compile(r"^pyradiomics-3\.1\.0/data/([A-Za-z0-9_]+\.nrrd|README\.md)$")
with tarfile.open(target, "r:gz") as tar:
    members = [m for m in tar.getmembers() if m.isfile() and wanted.match(m.name)]
    tar.extractall(dest, members=members, filter="data")
print(f"pyradiomics: {len(members)} files from {sdist} (sha256 ok) into {Path(dest) / 'pyradiomics-3.1.0' / 'data'}")
PY
}

install_deb() {
    local package="$1" marker="$2" name="$3"
    if [ -e "$marker" ]; then
        echo "$name: present ($marker)"
        return 0
    fi
    if [ "$(id -u)" -ne 0 ]; then
        echo "$name: missing; run as root: apt-get install -y $package"
        return 0
    fi
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$package" >/dev/null 2>&1; then
        apt-get update -q >/dev/null 2>&1 || true
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$package" >/dev/null 2>&1; then
            echo "$name: apt-get install -y $package failed" >&2
            status=1
            return 0
        fi
    fi
    echo "$name: installed $package ($marker)"
}

if ! fetch_pyradiomics; then
    echo "fetch_imaging_data.sh: pyradiomics data not fetched (see the line above)" >&2
    exit 1
fi
install_deb mricron-data /usr/share/mricron/templates/ch2.nii.gz colin27
install_deb invesalius-examples /usr/share/doc/invesalius-examples/examples/Cranium.inv3 invesalius_ct
exit "$status"
