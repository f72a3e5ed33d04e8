"""harness.results.redact: the one way secrets are masked (REDACTED), in URLs and configuration blocks."""

from harness.results.redact import REDACTED, redact_config, redact_url


def test_url_loses_credentials_and_every_query_value():
    assert redact_url("http://127.0.0.1:7860/api/offer") == "http://127.0.0.1:7860/api/offer"
    assert redact_url("https://user:pw@agent.example/offer?token=abc&x=1") == \
        "https://agent.example/offer?token=REDACTED&x=REDACTED"
    assert redact_url("https://a.example:8443/o?api_key=s3cret#frag") == "https://a.example:8443/o?api_key=REDACTED"
    assert redact_url(None) is None and redact_url("") == ""
    assert redact_url("http://[::1") == "<unparseable URL>"
    assert redact_url(redact_url("https://u:p@h/o?t=1")) == redact_url("https://u:p@h/o?t=1")  # idempotent


def test_config_keeps_its_shape_and_masks_secret_values():
    cfg = {"turns": 5, "headers": {"Authorization": "Bearer x"}, "api_key": "k", "nested": [{"auth_token": "t"},
           {"note": "Bearer y"}, {"voice": "en"}], "password": None}
    assert redact_config(cfg) == {"turns": 5, "headers": REDACTED, "api_key": REDACTED,
                                  "nested": [{"auth_token": REDACTED}, {"note": REDACTED}, {"voice": "en"}],
                                  "password": REDACTED}
    assert cfg["api_key"] == "k"  # a copy, the input is untouched
    assert REDACTED == "REDACTED"
