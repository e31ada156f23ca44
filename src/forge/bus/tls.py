"""TLS on the bus: the certificates `forge up` makes for its own NATS, and a client that
trusts one CA only and speaks TLS before any byte of NATS.

Why: a nats-server that dies is started again on the same loopback port after a back-off.
A local user of the machine who binds that port in between received each service's
CONNECT, its password in clear, and then everything the services published (lab
variables, evidence); in a cluster a squatter on a route port received the route
password, with which it could join the cluster. Now every `forge up` makes a CA, signs
one certificate for 127.0.0.1 with it and throws the CA's key away; its servers present
that certificate to clients (TLS first: nats-server's ``handshake_first``) and to each
other on routes (mutual TLS), and its services, given the CA (``FORGE_NATS_CA``), go on
only with a server that proves it holds the key. A squatter has no such key: the
handshake fails before a password is sent.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import logging
import ssl
from dataclasses import dataclass, replace
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from forge.bus.permissions import BusCredentials
from forge.ca_file import read_ca
from forge.durable import replace_file

TLS_DIR = "nats-tls"  # under the storage root, for `forge up`'s own NATS
CA_NAME = "ca.pem"
CERT_NAME = "server.pem"
KEY_NAME = "server-key.pem"
TLS_TIMEOUT_S = 2
LOOPBACK_NAMES = ("127.0.0.1", "::1")
VALID_DAYS = 3650


@dataclass(frozen=True)
class BusTls:
    """The TLS files of one embedded NATS (in ``directory``): the CA clients trust, and the
    server's certificate and key (0600)."""

    directory: Path

    @property
    def ca_file(self) -> Path:
        """The CA certificate clients are given (``FORGE_NATS_CA``)."""
        return self.directory / CA_NAME

    @property
    def cert_file(self) -> Path:
        """The certificate every server presents (to clients and on routes)."""
        return self.directory / CERT_NAME

    @property
    def key_file(self) -> Path:
        """The certificate's private key (owner-only)."""
        return self.directory / KEY_NAME

    @classmethod
    def generate(cls, directory: Path) -> BusTls:
        """A new CA and a server certificate for the loopback addresses under ``directory``
        (made 0700); the CA's key is never written, so nothing can sign another."""
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.chmod(0o700)
        now = datetime.datetime.now(datetime.UTC)
        start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=VALID_DAYS)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Forge bus CA")])
        ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
              .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(start).not_valid_after(end)
              .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
              .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                           False, False), critical=True)
              .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                             critical=False)
              .sign(ca_key, hashes.SHA256()))
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = [x509.DNSName("localhost")]
        names += [x509.IPAddress(ipaddress.ip_address(a)) for a in LOOPBACK_NAMES]
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                            "forge-nats")]))
                .issuer_name(ca_name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(start).not_valid_after(end)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(True, False, False, False, False, False, False,
                                             False, False), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]),
                               critical=False)
                .add_extension(x509.SubjectAlternativeName(names), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    ca_key.public_key()), critical=False)
                .sign(ca_key, hashes.SHA256()))
        tls = cls(directory)
        replace_file(tls.key_file, key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()), mode=0o600)
        pem = serialization.Encoding.PEM
        replace_file(tls.cert_file, cert.public_bytes(pem) + ca.public_bytes(pem), mode=0o644)
        replace_file(tls.ca_file, ca.public_bytes(pem), mode=0o644)
        return tls

    def client_block(self) -> str:
        """nats-server config: clients speak TLS first and get this certificate."""
        return "tls " + json.dumps({
            "cert_file": str(self.cert_file), "key_file": str(self.key_file),
            "handshake_first": True, "timeout": TLS_TIMEOUT_S}, indent=2) + "\n"

    def route_tls(self) -> dict[str, object]:
        """The ``tls`` of a ``cluster`` block: both ends of a route present this certificate
        and accept only a peer's signed by the same CA."""
        return {"cert_file": str(self.cert_file), "key_file": str(self.key_file),
                "ca_file": str(self.ca_file), "verify": True, "timeout": TLS_TIMEOUT_S}

    def ca_pem(self) -> str:
        """The CA certificate, as clients are given it."""
        return read_ca(self.ca_file)


# asyncio's SSL transport warns each time a server closes a connection whose protocol
# (nats-py's) returns True from eof_received: noise on every output and log, nothing an
# operator can act on.
_EOF_NOISE = "returning true from eof_received() has no effect when using ssl"


def _not_eof_noise(record: logging.LogRecord) -> bool:
    return record.getMessage() != _EOF_NOISE


def client_context(ca_pem: str) -> ssl.SSLContext:
    """A client context that trusts only ``ca_pem`` (not the machine's CAs) and checks the
    server's name or address against its certificate."""
    asyncio_log = logging.getLogger("asyncio")
    if _not_eof_noise not in asyncio_log.filters:
        asyncio_log.addFilter(_not_eof_noise)
    ctx = ssl.create_default_context(cadata=ca_pem)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def trusting(credentials: BusCredentials, tls: BusTls | None) -> BusCredentials:
    """``credentials`` that go only to a server with a certificate of ``tls``'s CA (as
    they are without TLS)."""
    return credentials if tls is None else replace(credentials, server_ca=tls.ca_pem())
