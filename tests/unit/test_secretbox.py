"""SecretBox: Fernet sealing of endpoint secrets and header values, keys from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from daemon.config import load_config
from daemon.errors import ConfigError
from daemon.secretbox import (
    ENV_VAR,
    PLAINTEXT,
    PREFIX,
    SecretBox,
    SecretKeyError,
    generate_key,
    is_sealed,
    parse_keys,
)

PLAIN = "whsec_c2VjcmV0LXZhbHVlLWZvci10ZXN0cw=="


def box_of(*keys: str) -> SecretBox:
    return SecretBox.from_env({ENV_VAR: ",".join(keys)})


def test_sealed_value_round_trips_and_holds_no_plaintext() -> None:
    box = box_of(generate_key())
    stored = box.seal(PLAIN)
    assert stored.startswith(PREFIX) and is_sealed(stored)
    assert PLAIN not in stored
    assert box.seal(PLAIN) != stored  # a fresh IV every time
    assert box.open(stored, "endpoint ep_1 secret") == PLAIN


def test_non_ascii_values_round_trip() -> None:
    box = box_of(generate_key())
    assert box.open(box.seal("Bearer clé-ünïcode ✓"), "x") == "Bearer clé-ünïcode ✓"


def test_plaintext_values_pass_through_with_or_without_keys() -> None:
    assert not PLAINTEXT.enabled
    assert PLAINTEXT.seal(PLAIN) == PLAIN
    assert PLAINTEXT.open(PLAIN, "x") == PLAIN
    assert box_of(generate_key()).open(PLAIN, "x") == PLAIN


def test_second_key_decrypts_and_reseal_moves_values_to_the_first() -> None:
    old, new = generate_key(), generate_key()
    stored = box_of(old).seal(PLAIN)
    rotating = box_of(new, old)
    assert rotating.open(stored, "x") == PLAIN
    resealed = rotating.reseal(stored, "x")
    assert resealed is not None and resealed != stored and is_sealed(resealed)
    assert box_of(new).open(resealed, "x") == PLAIN  # the old key is no longer needed
    assert rotating.reseal(resealed, "x") is None  # already under the current key: idempotent
    # New writes use the first key only.
    assert box_of(new).open(rotating.seal(PLAIN), "x") == PLAIN


def test_reseal_encrypts_plaintext_values() -> None:
    key = generate_key()
    resealed = box_of(key).reseal(PLAIN, "x")
    assert resealed is not None and box_of(key).open(resealed, "x") == PLAIN


def test_wrong_key_gives_a_clear_error_without_key_token_or_plaintext() -> None:
    right, wrong = generate_key(), generate_key()
    stored = box_of(right).seal(PLAIN)
    for action in ("open", "reseal"):
        with pytest.raises(SecretKeyError) as caught:
            getattr(box_of(wrong), action)(stored, "endpoint ep_1 secret")
        message = str(caught.value)
        assert message.startswith(f"{ENV_VAR}: endpoint ep_1 secret cannot be decrypted")
        assert caught.value.exit_code == 2 and isinstance(caught.value, ConfigError)
        for leak in (PLAIN, stored, stored.removeprefix(PREFIX), right, wrong):
            assert leak not in message


def test_tampered_token_is_refused_not_decoded() -> None:
    box = box_of(generate_key())
    stored = box.seal(PLAIN)
    tampered = stored[:-6] + ("A" if stored[-6] != "A" else "B") + stored[-5:]
    with pytest.raises(SecretKeyError, match="cannot be decrypted"):
        box.open(tampered, "x")
    with pytest.raises(SecretKeyError, match="cannot be decrypted"):
        box.open(PREFIX + "not-a-token", "x")


def test_sealed_value_without_keys_names_the_variable() -> None:
    stored = box_of(generate_key()).seal(PLAIN)
    with pytest.raises(SecretKeyError) as caught:
        PLAINTEXT.open(stored, "endpoint ep_1 header Authorization")
    message = str(caught.value)
    assert message.startswith(f"{ENV_VAR}: endpoint ep_1 header Authorization is encrypted")
    assert "no key is configured" in message
    assert PLAIN not in message and stored not in message


@pytest.mark.parametrize("bad", ["not-a-key", "c2hvcnQ=", "é" * 44, Fernet.generate_key().hex()])
def test_malformed_key_names_the_variable_and_position_not_the_key(bad: str) -> None:
    good = generate_key()
    with pytest.raises(SecretKeyError) as caught:
        box_of(good, bad)
    message = str(caught.value)
    assert message.startswith(f"{ENV_VAR}: key 2 of 2 is not a Fernet key")
    assert bad not in message and good not in message


def test_empty_items_are_ignored_and_an_empty_variable_means_no_keys() -> None:
    key = generate_key()
    assert len(parse_keys(f" {key} , ")) == 1
    assert not SecretBox.from_env({ENV_VAR: ""}).enabled
    assert not SecretBox.from_env({}).enabled
    assert box_of(key, generate_key()).key_count == 2


def test_config_ignores_the_secret_keys_variable(tmp_path: Path) -> None:
    # WEBHOOKD_SECRET_KEYS looks like WEBHOOKD_<SECTION>_<KEY>, but "secret" is no section.
    missing = tmp_path / "none.toml"
    missing.write_text("")
    config = load_config(missing, {ENV_VAR: generate_key(), "HOME": str(tmp_path)})
    assert config == load_config(missing, {"HOME": str(tmp_path)})
