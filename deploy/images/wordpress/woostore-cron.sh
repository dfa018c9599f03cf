#!/bin/sh
# WordPress's scheduled work (WP-Cron: WooCommerce's Action Scheduler, its emails and
# clean-ups), run every WOOSTORE_CRON_INTERVAL seconds by the WordPress pod's `cron`
# container. WordPress would run it itself on page loads, through an HTTP request to its own
# URL, which the store's egress policy blocks: wp-config.php turns that off
# (DISABLE_WP_CRON). Until WordPress is installed there is nothing to run.
set -u

interval="${WOOSTORE_CRON_INTERVAL:-60}"
beat="${TMPDIR:-/tmp}/woostore-cron.beat"  # touched as each round begins
status="${TMPDIR:-/tmp}/woostore-cron.status"  # the exit status of the round's wp

# `woostore-cron --alive`, the container's liveness probe: a round began within three
# intervals and ten minutes (a round of many due events may take minutes).
if [ "${1:-}" = "--alive" ]; then
    [ -e "$beat" ] && [ $(($(date +%s) - $(stat -c %Y "$beat"))) -le $((interval * 3 + 600)) ]
    exit
fi

trap 'exit 0' TERM INT
while :; do
    touch "$beat"
    if wp --path=/var/www/html core is-installed 2>/dev/null; then
        # WP-CLI prints a line for each event it runs ("Executed the cron event 'x' in
        # 0.01s."): the container's log is the schedule at work, streamed as it goes, so a
        # round the liveness probe ends still says how far it got. A round with nothing due
        # prints nothing. The pipe hides wp's exit status: it is kept in a file.
        { wp --path=/var/www/html cron event run --due-now 2>&1; echo $? > "$status"; } \
            | grep --line-buffered -v -F 'Executed a total of 0 cron events'
        [ "$(cat "$status")" = 0 ] || echo "woostore-cron: wp cron event run failed" >&2
    fi
    # In the background, so a TERM ends the wait at once rather than after it.
    sleep "$interval" &
    wait $!
done
