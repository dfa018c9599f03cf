#!/bin/sh
# Prepares the store's volume (/var/www/html/wp-content), then runs the command (Apache).
# Idempotent: runs on every start of the WordPress pod.
set -eu

content=/var/www/html/wp-content
seed=/usr/src/woostore/seed/wp-content

# First start on an empty volume: the default themes, the plugins, an uploads folder.
if [ ! -e "$content/.woostore-seeded" ]; then
    cp -R "$seed/." "$content/"
    touch "$content/.woostore-seeded"
fi

# WooCommerce comes with the image: a new image brings its version into the volume (the
# plugin's own database updates run when it next loads).
plugin="$content/plugins/woocommerce"
if [ "$(cat "$plugin/.woostore-version" 2>/dev/null || true)" != "$WOOCOMMERCE_VERSION" ]; then
    rm -rf "$plugin.new"
    cp -R "$seed/plugins/woocommerce" "$plugin.new"
    rm -rf "$plugin"
    mv "$plugin.new" "$plugin"
fi

# Keys and salts of this store, made once and kept with its data: random per store, so a
# login cookie of one store is worthless at another.
salts="$content/woostore-salts.php"
if [ ! -s "$salts" ]; then
    umask 027
    # shellcheck disable=SC2016  # PHP source in single quotes: $name is PHP's, not the shell's
    php -r '
        echo "<?php\n";
        foreach (["AUTH_KEY", "SECURE_AUTH_KEY", "LOGGED_IN_KEY", "NONCE_KEY",
                  "AUTH_SALT", "SECURE_AUTH_SALT", "LOGGED_IN_SALT", "NONCE_SALT"] as $name) {
            printf("define(%s, %s);\n", var_export($name, true), var_export(bin2hex(random_bytes(32)), true));
        }
    ' > "$salts.new"
    mv "$salts.new" "$salts"
fi

exec "$@"
