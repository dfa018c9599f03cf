#!/bin/sh
# WordPress's scheduled work (WP-Cron: WooCommerce's Action Scheduler, its emails and
# clean-ups), run every WOOSTORE_CRON_INTERVAL seconds by the WordPress pod's `cron`
# container. WordPress would run it itself on page loads, through an HTTP request to its own
# URL, which the store's egress policy blocks: wp-config.php turns that off
# (DISABLE_WP_CRON). Until WordPress is installed there is nothing to run.
set -u

interval="${WOOSTORE_CRON_INTERVAL:-60}"
# What the log shows: "events", a line for each event run; "failures", only the rounds that
# failed (Action Scheduler runs every minute: at thousands of stores, "events" is millions of
# lines a day for a log pipeline to carry).
log_mode="${WOOSTORE_CRON_LOG:-events}"
beat="${TMPDIR:-/tmp}/woostore-cron.beat"  # touched as each round begins
status="${TMPDIR:-/tmp}/woostore-cron.status"  # the exit status of the round's wp
# A quiet round's output, shown if it fails. It outlives a container the liveness probe
# restarts mid-round (the directory is the pod's), so the next start shows how far it got.
round_output="${TMPDIR:-/tmp}/woostore-cron.round"

# `woostore-cron --alive`, the container's liveness probe: a round began within three
# intervals and ten minutes (a round of many due events may take minutes).
if [ "${1:-}" = "--alive" ]; then
    [ -e "$beat" ] && [ $(($(date +%s) - $(stat -c %Y "$beat"))) -le $((interval * 3 + 600)) ]
    exit
fi

case "$log_mode" in
    events | failures) ;;
    *) echo "woostore-cron: WOOSTORE_CRON_LOG is events or failures, not '$log_mode'" >&2
       exit 2 ;;
esac
if [ -s "$round_output" ]; then
    echo "woostore-cron: the last round was cut off; what it had printed:" >&2
    cat "$round_output"
fi
rm -f "$round_output"

# A TERM (the pod stopping) lets a round under way finish and say how it went; the wait
# between rounds ends at once.
stopping=""
trap 'stopping=1' TERM INT
while :; do
    touch "$beat"
    if wp --path=/var/www/html core is-installed 2>/dev/null; then
        if [ "$log_mode" = events ]; then
            # WP-CLI prints a line for each event it runs ("Executed the cron event 'x' in
            # 0.01s."): the container's log is the schedule at work, streamed as it goes, so
            # a round the liveness probe ends still says how far it got. A round with nothing
            # due prints nothing. The pipe hides wp's exit status: it is kept in a file.
            { wp --path=/var/www/html cron event run --due-now 2>&1; echo $? > "$status"; } \
                | grep --line-buffered -v -F 'Executed a total of 0 cron events'
        else
            wp --path=/var/www/html cron event run --due-now > "$round_output" 2>&1
            echo $? > "$status"
            [ "$(cat "$status")" = 0 ] || cat "$round_output"
            rm -f "$round_output"
        fi
        [ "$(cat "$status")" = 0 ] || echo "woostore-cron: wp cron event run failed" >&2
    fi
    [ -z "$stopping" ] || exit 0
    # In the background, so a TERM ends the wait at once rather than after it.
    sleep "$interval" &
    wait $!
    [ -z "$stopping" ] || exit 0
done
