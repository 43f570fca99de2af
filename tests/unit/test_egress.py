"""Egress through a forward proxy: which deliveries use it, the delivery.proxy and
delivery.no_proxy keys, and its credentials kept out of every error and display."""

from __future__ import annotations

import base64
import random

import pytest

from daemon import reload
from daemon.config import Config, config_as_dict, load_config
from daemon.egress import Egress, NoProxy, parse_no_proxy_entry, parse_proxy, redact_proxy
from daemon.endpoints import EndpointSpec, validate_spec
from daemon.errors import ConfigError
from daemon.models import AttemptResult
from daemon.retry import decide

SECRET = "p@ss:w0rd"
PROXY = "http://egress:p%40ss%3Aw0rd@egress.internal:3128"


def test_credentials_become_a_proxy_authorization_header_and_leave_the_url() -> None:
    proxy = parse_proxy(PROXY)
    assert (proxy.url, proxy.host) == ("http://egress.internal:3128", "egress.internal")
    assert proxy.headers is not None
    token = proxy.headers["Proxy-Authorization"].removeprefix("Basic ")
    assert base64.b64decode(token).decode() == f"egress:{SECRET}"
    assert proxy.redact(f"failed {SECRET} p%40ss%3Aw0rd {token}") == "failed *** *** ***"
    assert parse_proxy("http://[::1]:8080").url == "http://[::1]:8080"


@pytest.mark.parametrize(
    "text",
    [
        f"https://egress:{SECRET}@egress.internal:3128",
        f"socks5://egress:{SECRET}@egress.internal:1080",
        f"http://egress:{SECRET}@egress.internal:99999",
        f"http://egress:{SECRET}@bad_host!:3128",
        f"http://egress:{SECRET}@egress.internal:3128/path",
        f"egress:{SECRET}",
    ],
)
def test_a_bad_proxy_url_is_refused_without_showing_it(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_proxy(text)
    assert SECRET not in str(caught.value) and "egress.internal" not in str(caught.value)


def test_an_endpoints_own_proxy_may_not_hold_credentials() -> None:
    with pytest.raises(ValueError, match="must not hold credentials"):
        parse_proxy(PROXY, credentials=False)


def test_no_proxy_matches_names_with_their_subdomains_addresses_and_blocks() -> None:
    entries = tuple(
        parse_no_proxy_entry(e) for e in ("Internal.Example", ".corp", "10.0.0.0/8", "[::1]")
    )
    assert entries == ("internal.example", "corp", "10.0.0.0/8", "::1/128")
    rules = NoProxy(entries)
    assert rules.matches("internal.example") and rules.matches("a.b.internal.example")
    assert rules.matches("hooks.corp") and rules.matches("10.2.3.4") and rules.matches("[::1]")
    assert not rules.matches("notinternal.example") and not rules.matches("11.0.0.1")
    assert not rules.matches("example.com")
    assert NoProxy(("*",)).matches("anything.example")
    with pytest.raises(ValueError, match="not a host name"):
        parse_no_proxy_entry("bad host")


def test_routes_follow_the_endpoint_then_the_default_then_no_proxy() -> None:
    egress = Egress(PROXY, (parse_no_proxy_entry("direct.example"),))
    default = egress.route("https://hooks.example.com/x", None)
    assert default is not None and default.url == "http://egress.internal:3128"
    assert egress.route("https://hooks.example.com/x", "none") is None
    own = egress.route("https://hooks.example.com/x", "http://other.internal:8080")
    assert own is not None and own.url == "http://other.internal:8080"
    assert egress.route("https://api.direct.example/x", None) is None
    assert egress.route("https://api.direct.example/x", "http://other.internal:8080") is None
    assert Egress().route("https://hooks.example.com/x", None) is None


def test_delivery_proxy_and_no_proxy_load_from_file_and_environment(tmp_path: object) -> None:
    cfg = load_config(
        None,
        {
            "HOME": "/home/hook",
            "WEBHOOKD_DELIVERY_PROXY": PROXY,
            "WEBHOOKD_DELIVERY_NO_PROXY": " .corp, 10.0.0.0/8 ,",
        },
    )
    assert cfg.delivery.proxy == PROXY
    assert cfg.delivery.no_proxy == ("corp", "10.0.0.0/8")
    shown = config_as_dict(cfg)["delivery"]
    assert shown["proxy"] == "http://egress:***@egress.internal:3128"
    assert shown["no_proxy"] == ["corp", "10.0.0.0/8"]
    assert SECRET not in str(config_as_dict(cfg)) and "w0rd" not in str(config_as_dict(cfg))


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"WEBHOOKD_DELIVERY_PROXY": f"https://u:{SECRET}@egress:3128"}, "http://host:port"),
        ({"WEBHOOKD_DELIVERY_PROXY": f"http://u:{SECRET}@:3128"}, "no valid proxy host"),
        ({"WEBHOOKD_DELIVERY_NO_PROXY": "ok.example, not valid"}, "item 2:"),
    ],
)
def test_a_bad_proxy_setting_is_one_line_naming_the_key_and_never_the_password(
    env: dict[str, str], says: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, {"HOME": "/home/hook", **env})
    message = str(caught.value)
    assert message.startswith("delivery.") and says in message and "\n" not in message
    assert SECRET not in message


def test_a_new_proxy_or_password_needs_a_restart() -> None:
    running = Config().with_overrides(delivery={"proxy": PROXY})
    other_password = PROXY.replace("w0rd", "w1rd")
    plan = reload.plan(running, running.with_overrides(delivery={"proxy": other_password}))
    assert plan.needs_restart == ["delivery.proxy"] and plan.config.delivery.proxy == PROXY
    listed = running.with_overrides(delivery={"no_proxy": ("corp",)})
    assert reload.plan(running, listed).needs_restart == ["delivery.no_proxy"]


def test_redact_proxy_shows_everything_but_the_password() -> None:
    assert redact_proxy(PROXY) == "http://egress:***@egress.internal:3128"
    assert redact_proxy("http://egress.internal:3128") == "http://egress.internal:3128"
    assert redact_proxy("none") == "none"


def test_an_endpoint_proxy_is_checked_as_add_checks_it_without_echoing_it() -> None:
    url = "https://hooks.example.com/x"
    for ok in (None, "none", "http://egress.internal:3128"):
        validate_spec(EndpointSpec(url, proxy=ok), allow_http=False)
    with pytest.raises(ConfigError) as caught:
        validate_spec(EndpointSpec(url, proxy=PROXY), allow_http=False)
    assert caught.value.key == "--proxy" and "must not hold credentials" in caught.value.why
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    "error_class", ["proxy_unreachable", "proxy_auth", "proxy_refused", "proxy_error"]
)
def test_the_proxys_failures_are_retried_but_say_nothing_about_the_endpoint(
    error_class: str,
) -> None:
    result = AttemptResult(0.0, 0.01, None, error_class, "the proxy")
    assert not result.about_endpoint
    decision = decide(1, result, (5.0,), jitter=0.0, rng=random.Random(1), max_retry_after_s=60)
    assert decision is not None and decision.retry
