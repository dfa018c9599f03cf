#!/bin/sh
# WordPress's scheduled work (WP-Cron: WooCommerce's Action Scheduler, its emails and
# clean-ups), run every WOOSTORE_CRON_INTERVAL seconds by the WordPress pod's `cron`
# container. WordPress would run it itself on page loads, through an HTTP request to its own
# URL, which the store's egress policy blocks: wp-config.php turns that off
# (DISABLE_WP_CRON). Until WordPress is installed there is nothing to run.
set -u

interval="${WOOSTORE_CRON_INTERVAL:-60}"
beat="${TMPDIR:-/tmp}/woostore-cron.beat"  # touched as each round begins

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
        wp --path=/var/www/html cron event run --due-now --quiet \
            || echo "woostore-cron: wp cron event run failed" >&2
    fi
    # In the background, so a TERM ends the wait at once rather than after it.
    sleep "$interval" &
    wait $!
done
