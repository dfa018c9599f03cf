"""`wp woostore personalise`, the store image's command that makes a claimed store its owner's
in one WP-CLI run: registered with the flags the recipe and the simulator use, documented,
sharing the salts writer with `wp woostore shuffle-salts`; and, where PHP is installed, its
pure parts (the argument checks, the products to change, the report) answering as the
simulator's counterparts do. CI machines have no PHP: those tests skip, saying so.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.charts.chart import REPO
from woostore_cluster.simulated import (
    PERSONALISE_OPTIONS,
    PERSONALISE_PASSWORD,
    parse_products,
    personalise_input,
    personalise_summary,
    products_to_change,
)

WORDPRESS = REPO / "deploy" / "images" / "wordpress"
PLUGIN = WORDPRESS / "woostore-mu-plugin.php"
README = WORDPRESS / "README.md"


def squeezed(text: str) -> str:
    return re.sub(r"\s+", "", text)


def docblock_of(plugin: str, function: str) -> str:
    """The comment right before ``function <name>(``: what WP-CLI reads the synopsis from."""
    before = plugin[: plugin.index(f"\nfunction {function}(")]
    return before[before.rindex("/**") :]


def body_of(plugin: str, function: str) -> str:
    start = plugin.index(f"\nfunction {function}(")
    return plugin[start : plugin.index("\n}\n", start)]


def test_the_command_is_registered_with_the_flags_the_simulator_takes() -> None:
    plugin = PLUGIN.read_text()
    doc = docblock_of(plugin, "woostore_personalise")

    synopsis = re.findall(r"^ \* (\[?)--([a-z_-]+)=<[a-z]+>(\]?)\n \* : \S", doc, re.MULTILINE)

    assert [name for opening, name, _ in synopsis if not opening] == list(PERSONALISE_OPTIONS)
    assert [(o, name, c) for o, name, c in synopsis if o] == [("[", PERSONALISE_PASSWORD, "]")]
    # Masked where WP-CLI echoes a prompted command (newer than the image's 2.12).
    assert re.search(
        rf"\[--{PERSONALISE_PASSWORD}=<password>\]\n( \* :.*\n)+"
        r" \* ---\n \* sensitive: true\n \* ---",
        doc,
    )
    registered = re.search(
        r"if \( defined\( 'WP_CLI' \) && WP_CLI \) \{\s*"
        r"WP_CLI::add_command\( 'woostore shuffle-salts', 'woostore_shuffle_salts' \);\s*"
        r"WP_CLI::add_command\(\s*'woostore personalise',\s*'woostore_personalise',\s*"
        r"array\( 'before_invoke' => 'woostore_hide_prompted_password' \)\s*\);\s*\}\s*$",
        plugin,
    )
    assert registered, "both commands, personalise with the hook that hides its echo"
    # The command reads each flag by the name WP-CLI hands it, and the logger is put back
    # before anything else runs.
    reader = body_of(plugin, "woostore_personalise_input")
    for name in (*PERSONALISE_OPTIONS, PERSONALISE_PASSWORD):
        assert f"'{name}'" in reader, name
    command = body_of(plugin, "woostore_personalise")
    assert command.split("{", 1)[1].lstrip().startswith("woostore_quiet_logger( false );")


def test_the_command_is_documented_as_the_recipe_calls_it() -> None:
    header = PLUGIN.read_text().split("*/", 1)[0]
    readme = README.read_text()

    for text in (header, readme):
        assert "wp woostore personalise" in text
        for name in PERSONALISE_OPTIONS:
            assert f"--{name}=" in text, name
        assert f"--prompt={PERSONALISE_PASSWORD}" in text
        assert "`Success: Personalised the store at <to-host>: " in " ".join(text.split())


def test_both_commands_shuffle_salts_with_the_same_writer() -> None:
    plugin = PLUGIN.read_text()

    assert plugin.count("random_bytes( 32 )") == 1  # the salts' format, written once
    assert "woostore_write_salts()" in body_of(plugin, "woostore_shuffle_salts")
    assert "woostore_write_salts()" in body_of(plugin, "woostore_personalise")


def test_the_address_is_rewritten_by_wp_clis_own_search_replace() -> None:
    """In this process, as `wp search-replace //<old> //<new> --all-tables --skip-columns=guid`
    would, its count read from its last line (WP-CLI may echo a prompted command first)."""
    command = squeezed(body_of(PLUGIN.read_text(), "woostore_personalise"))

    assert (
        "WP_CLI::runcommand(sprintf('search-replace//%s//%s--all-tables--skip-columns=guid"
        "--format=count',$input['from'],$input['to']),array('launch'=>false,"
        "'return'=>'all','exit_error'=>false,)"
    ) in command
    assert "if($input['from']!==$input['to'])" in command
    assert "(int)end($lines)" in command
    # Options and the user with WordPress's own functions; orders and products with
    # WooCommerce's, deleted for good.
    for call in (
        "update_option($option,$value)",
        "wp_update_user(",
        "wp_set_password($input['password'],$admin->ID)",
        "wc_get_orders(array('limit'=>-1,",
        "$order->delete(true)",
        "$product->delete(true)",
        "newWC_Product_Simple()",
        "$product->set_status('publish')",
    ):
        assert call in command, call
    assert "'woocommerce_coming_soon'=>'no'" in command


# -- the plugin's pure functions, run by PHP where it is installed ---------------------------

# Loads the plugin as WordPress would not: without WordPress, so only its pure functions are
# called. Reads [[function, args...], ...] as JSON on stdin, writes the results as JSON.
HARNESS = """<?php
define( 'ABSPATH', __DIR__ . '/' );
function add_filter() {}
require getenv( 'WOOSTORE_PLUGIN' );
$results = array();
foreach ( json_decode( stream_get_contents( STDIN ), true ) as $call ) {
	$results[] = call_user_func_array( array_shift( $call ), $call );
}
echo json_encode( $results );
"""


@pytest.fixture
def php(tmp_path: Path) -> Any:
    binary = shutil.which("php")
    if binary is None:
        pytest.fail("php is missing: run `make php` (apt-get install php-cli)")
    harness = tmp_path / "harness.php"
    harness.write_text(HARNESS)

    def call(*calls: list[Any]) -> list[Any]:
        ran = subprocess.run(
            [binary, str(harness)],
            input=json.dumps(list(calls)),
            capture_output=True,
            text=True,
            env={"WOOSTORE_PLUGIN": str(PLUGIN), "PATH": "/usr/bin:/bin"},
            timeout=60,
            check=False,
        )
        assert ran.returncode == 0, ran.stdout + ran.stderr
        results: list[Any] = json.loads(ran.stdout)
        return results

    return call


PRODUCT_LISTS = [
    "[]",
    '[{"name": "Ceramic Mug", "regular_price": "9.00"}, {"name": "Tote", "regular_price": "15"}]',
    "not json",
    "null",
    '"Ceramic Mug"',
    "{}",
    '{"name": "Ceramic Mug", "regular_price": "9.00"}',
    '["Ceramic Mug"]',
    '[{"name": "Ceramic Mug", "regular_price": 9}]',
    '[{"name": "Ceramic Mug", "regular_price": "9.00\\n"}]',
    '[{"name": "Ceramic Mug", "regular_price": "-1"}]',
    '[{"name": "Ceramic Mug"}]',
    '[{"name": " ", "regular_price": "1.00"}]',
    '[{"name": 7, "regular_price": "1.00"}]',
    '[{"name": "Mug", "regular_price": "1.00", "price": "1", "colour": "red"}]',
    '[{"name": "Tea & Cake", "regular_price": "1"},'
    ' {"name": "Tea &amp; Cake", "regular_price": "2"}]',
]


def test_products_are_read_as_the_simulator_reads_them(php: Any) -> None:
    assert php(*(["woostore_parse_products", text] for text in PRODUCT_LISTS)) == [
        parse_products(text) for text in PRODUCT_LISTS
    ]


OWNER = {
    "from-host": "pool-7f3a9c.shops.example.test",
    "to-host": "acme-42.shops.example.test:8443",
    "title": "Acme Coffee ☕ & Tea",
    "admin-email": "owner@acme.example",
    "currency": "EUR",
    "country": "IN:KA",
    "products": '[{"name": "Ceramic Mug", "regular_price": "9.00"}]',
    PERSONALISE_PASSWORD: "owner-pw-1",
}
ARGUMENTS: list[tuple[dict[str, Any], str | bool]] = [
    (OWNER, PERSONALISE_PASSWORD),
    (OWNER, f"title,{PERSONALISE_PASSWORD}"),
    (OWNER, True),  # a bare --prompt asks for every argument
    (OWNER, False),  # the password on the command line
    ({**OWNER, PERSONALISE_PASSWORD: ""}, PERSONALISE_PASSWORD),
    ({**OWNER, PERSONALISE_PASSWORD: " "}, PERSONALISE_PASSWORD),
    ({**OWNER, PERSONALISE_PASSWORD: True}, PERSONALISE_PASSWORD),
    ({k: v for k, v in OWNER.items() if k != PERSONALISE_PASSWORD}, PERSONALISE_PASSWORD),
    ({k: v for k, v in OWNER.items() if k != "title"}, PERSONALISE_PASSWORD),
    ({**OWNER, "title": True}, PERSONALISE_PASSWORD),
    ({**OWNER, "title": " "}, PERSONALISE_PASSWORD),
    ({**OWNER, "from-host": "pool.example --all-tables"}, PERSONALISE_PASSWORD),
    ({**OWNER, "to-host": "-acme.example"}, PERSONALISE_PASSWORD),
    ({**OWNER, "to-host": "acme.example\n"}, PERSONALISE_PASSWORD),
    ({**OWNER, "currency": "eur"}, PERSONALISE_PASSWORD),
    ({**OWNER, "country": "DE"}, PERSONALISE_PASSWORD),
    ({**OWNER, "country": "in:ka"}, PERSONALISE_PASSWORD),
    ({**OWNER, "products": "{}"}, PERSONALISE_PASSWORD),
]


def test_arguments_are_checked_as_the_simulator_checks_them(php: Any) -> None:
    calls = [["woostore_personalise_input", given, prompt] for given, prompt in ARGUMENTS]

    assert php(*calls) == [personalise_input(given, prompt) for given, prompt in ARGUMENTS]


EXISTING = [
    {"id": 12, "name": "Cotton Tote Bag", "published": True},
    {"id": 10, "name": "Organic Coffee Beans", "published": True},
    {"id": 11, "name": "Ceramic Mug", "published": True},
    {"id": 14, "name": "Ceramic Mug", "published": True},
    {"id": 15, "name": "Tea &amp; Cake", "published": True},
    {"id": 13, "name": "Linen Apron", "published": False},
]
WANTED = [
    [],
    [{"name": "Ceramic Mug", "regular_price": "9.00"}],
    [
        {"name": "Linen Apron", "regular_price": "24.00"},
        {"name": "Tea & Cake", "regular_price": "4.00"},
        {"name": "Cotton Tote Bag", "regular_price": "15.00"},
    ],
]


def test_the_products_to_change_are_the_simulators(php: Any) -> None:
    ran = php(*(["woostore_products_to_change", wanted, EXISTING] for wanted in WANTED))

    expected = []
    for wanted in WANTED:
        create, delete = products_to_change(wanted, EXISTING)
        expected.append({"create": create, "delete": delete})
    assert ran == expected
    assert ran[1] == {"create": [], "delete": [10, 12, 13, 14, 15]}


def test_the_report_is_the_simulators(php: Any) -> None:
    counts = [
        {"replacements": 2, "settings": 4, "orders": 1, "created": 1, "deleted": 2},
        {"replacements": 1, "settings": 1, "orders": 0, "created": 0, "deleted": 1},
    ]
    host = "acme-42.shops.example.test"

    ran = php(*(["woostore_personalise_summary", host, c] for c in counts))

    assert ran == [personalise_summary(host, c) for c in counts]
