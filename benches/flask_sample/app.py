"""The per-request work of Microsoft's old Flask token-validation sample
(outlook-actionable-messages-python-token-validation), rewritten for the
benchmark in benches/run.sh so that the comparison is like for like.

What it keeps from the sample: Flask's own server (`app.run()`, threaded),
the signing keys loaded once from the discovery document and kept in a
class-level dictionary, and for every press a new validator that splits the
Authorization header, decodes the token's header for its `kid`, verifies the
token with PyJWT (RS256, issuer `https://substrate.office.com/sts/`, audience
the service URL), checks `appid`, and checks the sender and the performer.

What differs: the discovery URL, the service URL and the sender come from the
environment (the sample hard-codes substrate.office.com, a placeholder URL and
lob@contoso.com); the keys are read once at start-up instead of on the first
press; and the key lookup works (the published sample calls its class-level
key dictionary as if it were a method, so every press it handles fails with
a 500). Not for any use but this benchmark.
"""

import base64
import json
import os
import urllib.request

import jwt
from flask import Flask, abort, request
from jwt.algorithms import RSAAlgorithm

DISCOVERY = os.environ["SAMPLE_DISCOVERY_URL"]
SERVICE_URL = os.environ["SAMPLE_SERVICE_URL"]
SENDER = os.environ.get("SAMPLE_SENDER", "lob@contoso.com")
PERFORMER_DOMAIN = os.environ.get("SAMPLE_PERFORMER_DOMAIN", "@contoso.com")
ACTIONS_APP_ID = "48af08dc-f6d2-435f-b2a7-069abd99c086"
ISSUER = "https://substrate.office.com/sts/"


def fetch_json(url):
    with urllib.request.urlopen(url) as answer:
        return json.loads(answer.read().decode("utf-8"))


class SigningKeys:
    """The key cache: one dictionary for the process, keyed by discovery URL."""

    by_url = {}

    @classmethod
    def get(cls, url):
        keys = cls.by_url.get(url)
        if keys is None:
            jwks = fetch_json(fetch_json(url)["jwks_uri"])
            keys = {k["kid"]: RSAAlgorithm.from_jwk(json.dumps(k)) for k in jwks["keys"]}
            cls.by_url[url] = keys
        return keys


class Refused(Exception):
    pass


class Validator:
    def validate(self, token, service_url):
        try:
            keys = SigningKeys.get(DISCOVERY)
            header_segment = token.encode("utf-8").split(b".", 1)[0]
            header_segment += b"=" * (-len(header_segment) % 4)
            header = json.loads(base64.urlsafe_b64decode(header_segment).decode("utf-8"))
            key = keys.get(header["kid"])
            if key is None:
                raise Refused("unknown kid")
            claims = jwt.decode(
                token, key, algorithms=["RS256"], issuer=ISSUER, audience=service_url
            )
            if claims["appid"].lower() != ACTIONS_APP_ID:
                raise Refused("wrong appid")
            return claims["sender"], claims["sub"]
        except Exception as e:  # the sample turns every failure into one error
            raise Refused(str(e))


app = Flask(__name__)


@app.route("/api/expense", methods=["POST"])
def expense():
    kind, token = request.headers["Authorization"].rsplit(" ", 1)
    if kind.lower() != "bearer":
        abort(500)
    try:
        sender, performer = Validator().validate(token, SERVICE_URL)
    except Refused as e:
        print(e)
        abort(500)
    if sender.lower() != SENDER or not performer.lower().endswith(PERFORMER_DOMAIN):
        abort(500)
    return ""


SigningKeys.get(DISCOVERY)

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("SAMPLE_PORT", "5000")))
