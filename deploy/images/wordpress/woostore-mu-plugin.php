<?php
/**
 * Plugin Name: WooStore
 * Description: What every WooStore shop gets from the platform: its URLs in the scheme it is
 *   served with, and the WP-CLI commands `wp woostore shuffle-salts` and
 *   `wp woostore personalise`.
 *
 * A must-use plugin of the image, in /usr/src/woostore/mu-plugins (WPMU_PLUGIN_DIR, set in
 * wp-config.php): owned by root, outside the store's volume, so every store runs the version
 * its image brings and nobody can change it from WordPress.
 *
 * `wp woostore personalise` makes a store claimed from the warm pool its owner's in one WP-CLI
 * run, where one command per change would boot WordPress and WooCommerce each time:
 *
 *     wp woostore personalise --from-host=<old host> --to-host=<new host> --title=<site title>
 *         --admin-email=<email> --currency=<ISO 4217> --country=<CC or CC:STATE>
 *         --products=<JSON list> --prompt=admin_password
 *
 * with the admin's new password and a newline on stdin (WP-CLI's --prompt reads the command's
 * --admin_password from there; a password given on the command line is refused, as the
 * process table would show it). `--products` is a JSON list of {"name": ..., "regular_price":
 * "12.50"}: the products the store ends with. Every argument is checked before anything
 * changes; then, in this order, it
 *  1. rewrites `//<from-host>` to `//<to-host>` in every table, as `wp search-replace
 *     //<from-host> //<to-host> --all-tables --skip-columns=guid` (WP-CLI's own, run in this
 *     process); nothing when the two are the same;
 *  2. sets the options blogname, admin_email, woocommerce_currency and
 *     woocommerce_default_country, and woocommerce_coming_soon to "no";
 *  3. gives the user `admin` the email and the password (no notification mail is sent);
 *  4. shuffles the keys and salts, as `wp woostore shuffle-salts`;
 *  5. deletes every order, whatever its status, the trash included;
 *  6. keeps one published product of each name in --products (names compared with their
 *     HTML entities decoded, as WordPress may store `&` as `&amp;`), creates the missing ones
 *     as published simple products with their regular price, and deletes every other product
 *     for good (with its variations); `[]` deletes them all. A kept product keeps its price.
 * It prints one line, `Success: Personalised the store at <to-host>: ...`, counting what it
 * changed, never the password. Run again with the same arguments it changes nothing more but
 * the keys and salts, which it shuffles anew (a password given again is set again). A wrong
 * argument fails with `Error: ...` (exit 1) before any change.
 */

defined( 'ABSPATH' ) || exit;

/**
 * The store's URL is WordPress's own: the home and siteurl options, set by
 * `wp core install --url` and changed by `wp search-replace`, so giving a store a new host
 * restarts nothing. Only the scheme comes from the pod, WOOSTORE_URL_SCHEME (helm/store sets
 * "https" when its Ingress terminates TLS), as the pod keeps it whatever the host: a store
 * installed with an http:// URL is served, and links to itself, as https://.
 *
 * The store image keeps its tag across releases, so a store still on an earlier helm/store
 * may run this image: that chart set no WOOSTORE_URL_SCHEME but WOOSTORE_SITE_URL (its whole
 * URL, of which only the scheme is taken here), until the store is upgraded.
 *
 * @param mixed $url The option's value, as stored.
 * @return mixed The same URL in the pod's scheme.
 */
function woostore_url_in_scheme( $url ) {
	$scheme = getenv( 'WOOSTORE_URL_SCHEME' );
	if ( false === $scheme ) {
		$scheme = parse_url( (string) getenv( 'WOOSTORE_SITE_URL' ), PHP_URL_SCHEME );
	}
	if ( ! is_string( $url ) || ! in_array( $scheme, array( 'http', 'https' ), true ) ) {
		return $url;
	}
	return preg_replace( '#^https?://#i', $scheme . '://', $url );
}
add_filter( 'option_home', 'woostore_url_in_scheme' );
add_filter( 'option_siteurl', 'woostore_url_in_scheme' );

/**
 * Gives the store new random keys and salts: every login cookie and nonce made with the old
 * ones stops working. Rewrites wp-content/woostore-salts.php, in the format the image's
 * entrypoint writes it on the store's first start, all at once: the new file is written and
 * flushed beside the old one, then renamed over it, so WordPress never reads half a file.
 * Apache's PHP sees the new file within opcache's revalidation period (2 s in the base image).
 *
 * @return bool Whether the new file is in place (the old one stays when it is not).
 */
function woostore_write_salts() {
	$path = WP_CONTENT_DIR . '/woostore-salts.php';
	$php  = "<?php\n";
	foreach ( array(
		'AUTH_KEY',
		'SECURE_AUTH_KEY',
		'LOGGED_IN_KEY',
		'NONCE_KEY',
		'AUTH_SALT',
		'SECURE_AUTH_SALT',
		'LOGGED_IN_SALT',
		'NONCE_SALT',
	) as $name ) {
		$php .= sprintf( "define(%s, %s);\n", var_export( $name, true ), var_export( bin2hex( random_bytes( 32 ) ), true ) );
	}
	// A name of its own ('x': made here, never an existing file), on the same file system.
	$temporary = $path . '.' . bin2hex( random_bytes( 8 ) ) . '.new';
	$file      = fopen( $temporary, 'x' );
	$written   = false !== $file
		&& strlen( $php ) === fwrite( $file, $php )
		&& fflush( $file )
		&& fsync( $file );
	if ( false !== $file ) {
		fclose( $file );
	}
	// Readable by the web server's group only, as the entrypoint makes it (umask 027).
	if ( ! $written || ! chmod( $temporary, 0640 ) || ! rename( $temporary, $path ) ) {
		if ( file_exists( $temporary ) ) {
			unlink( $temporary );
		}
		return false;
	}
	return true;
}

/**
 * Gives the store new random keys and salts.
 *
 * Every login cookie and nonce made with the old ones stops working.
 */
function woostore_shuffle_salts() {
	if ( ! woostore_write_salts() ) {
		WP_CLI::error( 'Could not rewrite wp-content/woostore-salts.php.' );
	}
	WP_CLI::success( 'Shuffled the keys and salts in wp-content/woostore-salts.php.' );
}

/*
 * What `wp woostore personalise` decides without WordPress: its arguments, the products to
 * create and delete, its report. Pure functions, so they can be run on their own.
 */

/**
 * The command's arguments, checked: an array of from, to, title, email, currency, country,
 * products and password; or, when one is wrong, the error to fail with. The email is checked
 * with WordPress (is_email), by the command.
 *
 * @param array       $assoc_args The arguments, as WP-CLI hands them to the command.
 * @param string|bool $prompt     WP-CLI's --prompt: the names of the arguments read from stdin.
 * @return array|string
 */
function woostore_personalise_input( array $assoc_args, $prompt ) {
	$input = array();
	foreach ( array(
		'from'     => 'from-host',
		'to'       => 'to-host',
		'title'    => 'title',
		'email'    => 'admin-email',
		'currency' => 'currency',
		'country'  => 'country',
		'products' => 'products',
	) as $key => $name ) {
		if ( ! isset( $assoc_args[ $name ] ) || ! is_string( $assoc_args[ $name ] ) ) {
			return sprintf( '--%s needs a value.', $name );
		}
		$input[ $key ] = $assoc_args[ $name ];
	}
	foreach ( array( 'from' => 'from-host', 'to' => 'to-host' ) as $key => $name ) {
		// A DNS name, perhaps with a port: nothing that could be read as another argument.
		if ( ! preg_match( '/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$/D', $input[ $key ] ) ) {
			return sprintf( "--%s is not a host name: '%s'.", $name, $input[ $key ] );
		}
	}
	if ( '' === trim( $input['title'] ) ) {
		return '--title is empty.';
	}
	if ( ! preg_match( '/^[A-Z]{3}$/D', $input['currency'] ) ) {
		return sprintf( "--currency is not an ISO 4217 code: '%s'.", $input['currency'] );
	}
	if ( ! preg_match( '/^[A-Z]{2}(:[A-Z0-9-]{1,10})?$/D', $input['country'] ) ) {
		return sprintf( "--country is not a country code (DE) or a country and state code (IN:KA): '%s'.", $input['country'] );
	}
	$input['products'] = woostore_parse_products( $input['products'] );
	if ( is_string( $input['products'] ) ) {
		return $input['products'];
	}
	$password = isset( $assoc_args['admin_password'] ) ? $assoc_args['admin_password'] : '';
	$prompted = true === $prompt || in_array( 'admin_password', explode( ',', (string) $prompt ), true );
	if ( ! $prompted && '' !== $password ) {
		return 'The admin password goes on standard input (--prompt=admin_password), never in the arguments.';
	}
	if ( ! is_string( $password ) || '' === trim( $password ) ) {
		return 'The admin password is expected on standard input (--prompt=admin_password).';
	}
	$input['password'] = $password;
	return $input;
}

/**
 * --products, read: a list of array( 'name' => ..., 'regular_price' => ... ); or the error.
 *
 * @param string $json A JSON list of {"name": ..., "regular_price": "12.50"}.
 * @return array|string
 */
function woostore_parse_products( $json ) {
	$decoded = json_decode( $json ); // Objects as objects: `{}` is not taken for a list.
	if ( ! is_array( $decoded ) ) {
		return '--products is not a JSON list of products.';
	}
	$products = array();
	$names    = array();
	foreach ( $decoded as $index => $item ) {
		$number = $index + 1;
		if ( ! $item instanceof stdClass ) {
			return sprintf( '--products: product %d is not a JSON object.', $number );
		}
		$fields  = get_object_vars( $item );
		$unknown = array_diff( array_keys( $fields ), array( 'name', 'regular_price' ) );
		if ( $unknown ) {
			sort( $unknown );
			return sprintf( '--products: product %d has unknown fields: %s.', $number, implode( ', ', $unknown ) );
		}
		if ( ! isset( $fields['name'] ) || ! is_string( $fields['name'] ) || '' === trim( $fields['name'] ) ) {
			return sprintf( '--products: product %d has no name.', $number );
		}
		$price = isset( $fields['regular_price'] ) ? $fields['regular_price'] : null;
		if ( ! is_string( $price ) || ! preg_match( '/^[0-9]+(\.[0-9]+)?$/D', $price ) ) {
			return sprintf( '--products: product %d has no regular_price such as "12.50".', $number );
		}
		$key = woostore_product_key( $fields['name'] );
		if ( isset( $names[ $key ] ) ) {
			return sprintf( "--products names '%s' twice.", $fields['name'] );
		}
		$names[ $key ] = true;
		$products[]    = array(
			'name'          => $fields['name'],
			'regular_price' => $price,
		);
	}
	return $products;
}

/**
 * What a product's name is compared by: WordPress may store `&` as `&amp;` in a title.
 *
 * @param string $name A product's name, as given or as stored.
 * @return string
 */
function woostore_product_key( $name ) {
	return html_entity_decode( $name, ENT_QUOTES | ENT_HTML5, 'UTF-8' );
}

/**
 * Which products to create and which to delete so that the store ends with one published
 * product of each wanted name: of the existing ones, the first published one (by id) of each
 * wanted name stays; every other is deleted.
 *
 * @param array $wanted   As woostore_parse_products() reads them.
 * @param array $existing Each an array( 'id' => int, 'name' => string, 'published' => bool ).
 * @return array array( 'create' => the wanted products to make, 'delete' => ids, ascending ).
 */
function woostore_products_to_change( array $wanted, array $existing ) {
	$names = array();
	foreach ( $wanted as $product ) {
		$names[ woostore_product_key( $product['name'] ) ] = true;
	}
	usort(
		$existing,
		function ( $a, $b ) {
			return $a['id'] - $b['id'];
		}
	);
	$kept   = array();
	$delete = array();
	foreach ( $existing as $product ) {
		$key = woostore_product_key( $product['name'] );
		if ( $product['published'] && isset( $names[ $key ] ) && ! isset( $kept[ $key ] ) ) {
			$kept[ $key ] = $product['id'];
		} else {
			$delete[] = $product['id'];
		}
	}
	$create = array();
	foreach ( $wanted as $product ) {
		if ( ! isset( $kept[ woostore_product_key( $product['name'] ) ] ) ) {
			$create[] = $product;
		}
	}
	return array(
		'create' => $create,
		'delete' => $delete,
	);
}

/**
 * The line `wp woostore personalise` ends with (after "Success: "): what it changed.
 *
 * @param string $host   The store's new host.
 * @param array  $counts replacements, settings, orders, created, deleted.
 * @return string
 */
function woostore_personalise_summary( $host, array $counts ) {
	$counted = function ( $count, $one, $many ) {
		return sprintf( '%d %s', $count, 1 === $count ? $one : $many );
	};
	return sprintf(
		'Personalised the store at %s: %s, %s, the admin\'s email and password set, the keys and salts shuffled, %s, %s, %s.',
		$host,
		$counted( $counts['replacements'], 'replacement', 'replacements' ),
		$counted( $counts['settings'], 'setting changed', 'settings changed' ),
		$counted( $counts['orders'], 'order deleted', 'orders deleted' ),
		$counted( $counts['created'], 'product created', 'products created' ),
		$counted( $counts['deleted'], 'product deleted', 'products deleted' )
	);
}

/*
 * `wp woostore personalise` itself.
 */

/**
 * Makes a store claimed from the warm pool its owner's, in one run.
 *
 * Its address, title, administrator, keys and salts, settings, orders and products. The
 * admin's new password comes on stdin: pass --prompt=admin_password.
 *
 * ## OPTIONS
 *
 * --from-host=<host>
 * : The host the store's database links to now (the pooled store's).
 *
 * --to-host=<host>
 * : The owner's host: every `//<from-host>` in the database becomes `//<to-host>`.
 *
 * --title=<title>
 * : The site's title (blogname).
 *
 * --admin-email=<email>
 * : The site's admin_email, and the email of the user admin.
 *
 * --currency=<currency>
 * : woocommerce_currency, an ISO 4217 code such as EUR.
 *
 * --country=<country>
 * : woocommerce_default_country: a country code, or one and a state's, such as DE or IN:KA.
 *
 * --products=<json>
 * : The products the store ends with, a JSON list of {"name": ..., "regular_price": "12.50"}.
 *
 * [--admin_password=<password>]
 * : The new password of the user admin, read from stdin with --prompt=admin_password.
 * ---
 * sensitive: true
 * ---
 *
 * ## EXAMPLES
 *
 *     $ printf '%s\n' "$PASSWORD" | wp woostore personalise --from-host=pool-1.shops.test \
 *         --to-host=acme.shops.test --title='Acme Coffee' --admin-email=owner@acme.test \
 *         --currency=EUR --country=DE --products='[]' --prompt=admin_password
 *     Success: Personalised the store at acme.shops.test: 2 replacements, 4 settings changed, the admin's email and password set, the keys and salts shuffled, 1 order deleted, 0 products created, 3 products deleted.
 *
 * @param array $args       None.
 * @param array $assoc_args The options above.
 */
function woostore_personalise( $args, $assoc_args ) {
	woostore_quiet_logger( false );
	$input = woostore_personalise_input( $assoc_args, WP_CLI::get_config( 'prompt' ) );
	if ( is_string( $input ) ) {
		WP_CLI::error( $input );
	}
	if ( ! is_email( $input['email'] ) ) {
		WP_CLI::error( sprintf( "--admin-email is not an email address: '%s'.", $input['email'] ) );
	}
	if ( ! function_exists( 'wc_get_orders' ) ) {
		WP_CLI::error( 'WooCommerce is not active.' );
	}
	$admin = get_user_by( 'login', 'admin' );
	if ( ! $admin ) {
		WP_CLI::error( "The store has no user 'admin'." );
	}

	$replacements = 0;
	if ( $input['from'] !== $input['to'] ) {
		// The hosts are checked names: nothing in them is quoted or read as another argument.
		$replaced = WP_CLI::runcommand(
			sprintf( 'search-replace //%s //%s --all-tables --skip-columns=guid --format=count', $input['from'], $input['to'] ),
			array(
				'launch'     => false,
				'return'     => 'all',
				'exit_error' => false,
			)
		);
		if ( 0 !== $replaced->return_code ) {
			WP_CLI::error( 'Could not rewrite the address: ' . preg_replace( '/^Error: /', '', $replaced->stderr ) );
		}
		// The count is the last line: WP-CLI may log the command line before it (after --prompt).
		$lines        = explode( "\n", $replaced->stdout );
		$replacements = (int) end( $lines );
		wp_cache_flush(); // What this run reads next comes from the rewritten tables.
	}

	// The pool's placeholder addresses get no mail about the change.
	add_filter( 'send_site_admin_email_change_email', '__return_false' );
	add_filter( 'send_email_change_email', '__return_false' );
	$settings = 0;
	foreach ( array(
		'blogname'                    => $input['title'],
		'admin_email'                 => $input['email'],
		'woocommerce_currency'        => $input['currency'],
		'woocommerce_default_country' => $input['country'],
		'woocommerce_coming_soon'     => 'no',
	) as $option => $value ) {
		if ( update_option( $option, $value ) ) {
			++$settings;
		}
	}

	$updated = wp_update_user(
		array(
			'ID'         => $admin->ID,
			'user_email' => $input['email'],
		)
	);
	if ( is_wp_error( $updated ) ) {
		WP_CLI::error( "Could not set the admin's email: " . $updated->get_error_message() );
	}
	wp_set_password( $input['password'], $admin->ID );

	if ( ! woostore_write_salts() ) {
		WP_CLI::error( 'Could not rewrite wp-content/woostore-salts.php.' );
	}

	$orders = wc_get_orders(
		array(
			'limit'  => -1,
			'status' => array_merge( array_keys( wc_get_order_statuses() ), array( 'trash' ) ),
		)
	);
	foreach ( $orders as $order ) {
		$order->delete( true );
	}

	$existing = array();
	foreach ( wc_get_products(
		array(
			'limit'  => -1,
			'status' => array( 'publish', 'future', 'draft', 'pending', 'private', 'trash' ),
		)
	) as $product ) {
		$existing[] = array(
			'id'        => $product->get_id(),
			'name'      => $product->get_name(),
			'published' => 'publish' === $product->get_status(),
		);
	}
	$change = woostore_products_to_change( $input['products'], $existing );
	foreach ( $change['delete'] as $id ) {
		$product = wc_get_product( $id );
		if ( $product && $product->is_type( 'variable' ) ) {
			foreach ( $product->get_children() as $variation_id ) {
				$variation = wc_get_product( $variation_id );
				if ( $variation ) {
					$variation->delete( true );
				}
			}
		}
		if ( $product ) {
			$product->delete( true );
		}
	}
	foreach ( $change['create'] as $wanted ) {
		$product = new WC_Product_Simple();
		$product->set_name( $wanted['name'] );
		$product->set_regular_price( $wanted['regular_price'] );
		$product->set_status( 'publish' );
		if ( ! $product->save() ) {
			WP_CLI::error( sprintf( "Could not create the product '%s'.", $wanted['name'] ) );
		}
	}

	WP_CLI::success(
		woostore_personalise_summary(
			$input['to'],
			array(
				'replacements' => $replacements,
				'settings'     => $settings,
				'orders'       => count( $orders ),
				'created'      => count( $change['create'] ),
				'deleted'      => count( $change['delete'] ),
			)
		)
	);
}

/**
 * Sets WP-CLI's logger aside (quiet: errors only) and back. WP-CLI 2.12, the image's, writes
 * the command line to stdout before it runs a command given --prompt, with what it read from
 * stdin in it: here, the admin's new password. Later WP-CLI masks the arguments marked
 * `sensitive`, as --admin_password is; until the image has one, the logger is quiet from just
 * before that line (the command's before_invoke) until the command starts.
 *
 * @param bool $quiet Whether to set the logger aside, or to put it back.
 */
function woostore_quiet_logger( $quiet ) {
	static $held = null;
	if ( $quiet && null === $held ) {
		$held = WP_CLI::get_logger();
		WP_CLI::set_logger( new \WP_CLI\Loggers\Quiet() );
	} elseif ( ! $quiet && null !== $held ) {
		WP_CLI::set_logger( $held );
		$held = null;
	}
}

/**
 * Before `wp woostore personalise` is invoked: see woostore_quiet_logger().
 */
function woostore_hide_prompted_password() {
	woostore_quiet_logger( true );
}

if ( defined( 'WP_CLI' ) && WP_CLI ) {
	WP_CLI::add_command( 'woostore shuffle-salts', 'woostore_shuffle_salts' );
	WP_CLI::add_command(
		'woostore personalise',
		'woostore_personalise',
		array( 'before_invoke' => 'woostore_hide_prompted_password' )
	);
}
