"""Connection errors in Go's words (what dockerd prints)."""

from __future__ import annotations

import ssl

from dockyard.distribution.client import connection_error, tls_reason


def _verify_error(code: int, message: str) -> ssl.SSLCertVerificationError:
    err = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] {message}")
    err.verify_code = code
    err.verify_message = message
    return err


def test_unknown_authority():
    err = _verify_error(20, "unable to get local issuer certificate")
    text = connection_error("GET", "https://10.0.0.1:5000/v2/", err).message
    assert text == (
        'Get "https://10.0.0.1:5000/v2/": tls: failed to verify certificate: '
        "x509: certificate signed by unknown authority"
    )


def test_wrapped_and_textual_tls_errors():
    outer = RuntimeError("connect failed")
    outer.__cause__ = _verify_error(10, "certificate has expired")
    assert tls_reason(outer) == (
        "tls: failed to verify certificate: x509: certificate has expired or is not yet valid"
    )
    alert = OSError(1, "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert (_ssl.c:2580)")
    assert tls_reason(alert) == "remote error: tls: certificate required"
    assert tls_reason(ConnectionRefusedError(111, "refused")) is None


def test_refused_and_timeout():
    refused = ConnectionRefusedError(111, "Connection refused")
    text = connection_error("GET", "http://127.0.0.1:1/v2/", refused).message
    assert text == 'Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused'
