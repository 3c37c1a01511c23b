#!/bin/bash
# Fill a node-local model cache from the S3 mirror, once per node, and mark it complete.
#   fill-cache.sh NAME S3_URI [NAME S3_URI ...]
# Each S3 prefix holds the files of one model revision plus MANIFEST.sha256 (written last by the
# mirror-weights workflow). A cache entry is usable iff CACHE_ROOT/NAME/.complete exists and names the
# S3 prefix asked for with the manifest the mirror holds now; it is written only after every file
# verified against the manifest, so a pod never starts on a partial download, and a new revision
# (another prefix, or the same prefix mirrored again) replaces the old copy.
# Concurrent fillers on one node (two replicas, the fill-node-cache workflow) coordinate through an
# atomic `mkdir` lock: one downloads, the others wait for the marker.
set -euo pipefail

CACHE_ROOT="${CACHE_ROOT:-/cache}"
FILL_ON_MISS="${FILL_ON_MISS:-true}"        # false: only wait for another filler's marker
WAIT_TIMEOUT_SECONDS="${WAIT_TIMEOUT_SECONDS:-3600}"
LOCK_STALE_SECONDS="${LOCK_STALE_SECONDS:-1800}"
PARALLEL="${PARALLEL:-64}"                  # concurrent S3 requests
VERIFY_JOBS="${VERIFY_JOBS:-$(nproc)}"
POLL_SECONDS="${POLL_SECONDS:-5}"          # how often a waiting filler looks for the marker

log() { printf '%s fill-cache: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

if [ $(($# % 2)) -ne 0 ] || [ $# -eq 0 ]; then
  log "usage: fill-cache.sh NAME S3_URI [NAME S3_URI ...]"; exit 2
fi

aws configure set default.s3.preferred_transfer_client crt
aws configure set default.s3.max_concurrent_requests "$PARALLEL"
aws configure set default.s3.multipart_chunksize 64MB

# Whether DIR holds a verified copy of URI (marker: "<manifest sha256> <uri>") that is still current:
# the mirror's MANIFEST.sha256 is fetched (a few KB) and compared, so re-mirroring a moving ref such as
# `main` to the same prefix refills the cache. If S3 cannot be asked, the verified copy is used.
cached() {
  local marker="$1/.complete" digest source remote
  [ -f "$marker" ] || return 1
  read -r digest source < "$marker" || true
  [ -n "$digest" ] && [ "$source" = "$2" ] || return 1
  if remote=$(aws s3 cp --only-show-errors "${2%/}/MANIFEST.sha256" - 2>/dev/null | sha256sum | cut -d' ' -f1) \
     && [ "$remote" != "$EMPTY_SHA256" ]; then
    [ "$remote" = "$digest" ] || { log "$(basename "$1"): the mirror changed since it was cached"; return 1; }
  else
    log "$(basename "$1"): cannot read the mirror's manifest; using the verified cache"
  fi
}
EMPTY_SHA256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855

fill_one() {
  local name="$1" uri="$2"
  local dir="$CACHE_ROOT/$name" lock="$CACHE_ROOT/.$name.lock" partial="$CACHE_ROOT/.$name.partial"
  local deadline=$(( $(date +%s) + WAIT_TIMEOUT_SECONDS ))
  mkdir -p "$CACHE_ROOT"
  while :; do
    if cached "$dir" "$uri"; then
      log "$name: cache hit ($(cut -d' ' -f1 "$dir/.complete"))"; return 0
    fi
    if [ "$FILL_ON_MISS" = "true" ] && mkdir "$lock" 2>/dev/null; then
      break
    fi
    local locked_at; locked_at=$(stat -c %Y "$lock" 2>/dev/null || date +%s)
    if [ $(( $(date +%s) - locked_at )) -gt "$LOCK_STALE_SECONDS" ]; then
      log "$name: removing stale lock"; rmdir "$lock" 2>/dev/null || true; continue
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      log "$name: no completion marker after ${WAIT_TIMEOUT_SECONDS}s"; return 1
    fi
    sleep "$POLL_SECONDS"
  done
  # expanded now: the trap may run after this function's locals are gone
  trap "rm -rf '$lock' '$partial'" EXIT
  local started; started=$(date +%s)
  rm -rf "$partial"; mkdir -p "$partial"
  log "$name: downloading $uri"
  aws s3 cp --recursive --only-show-errors "${uri%/}/" "$partial/"
  [ -s "$partial/MANIFEST.sha256" ] || { log "$name: MANIFEST.sha256 missing in $uri"; return 1; }
  log "$name: verifying $(wc -l < "$partial/MANIFEST.sha256") files with $VERIFY_JOBS jobs"
  ( cd "$partial" && xargs -a MANIFEST.sha256 -P "$VERIFY_JOBS" -L 1 \
      sh -c 'printf "%s  %s\n" "$0" "$1" | sha256sum --check --quiet --strict' )
  rm -rf "$dir"; mv "$partial" "$dir"
  printf '%s %s\n' "$(sha256sum "$dir/MANIFEST.sha256" | cut -d' ' -f1)" "$uri" > "$dir/.complete.tmp"
  mv "$dir/.complete.tmp" "$dir/.complete"
  rm -rf "$lock"; trap - EXIT
  log "$name: complete: $(du -sh "$dir" | cut -f1) in $(( $(date +%s) - started ))s"
}

while [ $# -gt 0 ]; do
  fill_one "$1" "$2"
  shift 2
done
