"""One upload host name for the whole organisation (docs/operations.md,
"One upload host for the whole organisation"): HQ and a site both serve
https://files.example.org:PORT with a certificate from the organisation's
test CA, each on its own address, as each site's DNS (here: the address a
client is told, as a hosts file would) points the name at its own node.
An encrypted file's aesgcm:// link cannot be rewritten, and needs not be:
the same URL fetched at the site brings the file over the link once."""

import asyncio
import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
import ssl

from federation import Federation
from outpost_node import free_port
from upload_client import put, request
from xmpp import TIMEOUT, login

HOST = "files.example.org"
# Where the name points: at HQ, HQ; at the site, the site's node.
HQ_ADDRESS, SITE_ADDRESS = "127.0.0.2", "127.0.0.3"


def make_ca(dir):
    """A test CA and a certificate for HOST it signed: (ca.pem, cert, key)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Example Org test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    paths = (dir / "ca.pem", dir / "files.pem", dir / "files.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


@pytest.fixture
def org_network(tmp_path):
    ca, cert, key = make_ca(tmp_path)
    fed = Federation(tmp_path)
    port = free_port()
    for node, address in ((fed.hq, HQ_ADDRESS), (fed.raleigh, SITE_ADDRESS)):
        node.upload_port, node.upload_host = port, address
        node.public_url = f"https://{HOST}:{port}"
        node.append_config(f'[upload]\nlisten = "{address}:{port}"\npublic_url = "{node.public_url}"\n'
                           f'cert = "{cert}"\nkey = "{key}"\n')
    fed.start()
    yield fed, ssl.create_default_context(cafile=str(ca))
    fed.stop()


def test_every_node_serves_the_organisation_upload_host_and_an_encrypted_link_needs_no_rewriting(org_network):
    fed, ctx = org_network
    secret = bytes(range(256)) * 300  # an encrypted photo: opaque bytes

    async def scenario():
        kevin = await login(fed.hq.port, "kevin@fairfax.example/desk", "k-password")
        kevin.register_plugin("xep_0363")
        iq = await kevin.plugin["xep_0363"].request_slot(
            "upload.fairfax.example", "photo.jpg.enc", len(secret), "application/octet-stream", timeout=TIMEOUT)
        put_url, get_url = iq["http_upload_slot"]["put"]["url"], iq["http_upload_slot"]["get"]["url"]
        kevin.disconnect()
        assert get_url.startswith(f"https://{HOST}:{fed.hq.upload_port}/files/fairfax.example/"), get_url
        # At HQ the name is HQ: the upload, checked against the org's CA.
        assert (await put(put_url, ctx, secret, address=HQ_ADDRESS)).status == 201
        # OMEMO sends aesgcm://HOST/…#key inside the encrypted message; the
        # client fetches https://HOST/… with the fragment kept to itself.
        # At the site the same name is the site's node, which brings the
        # file over the link.
        r = await request(get_url, ctx, address=SITE_ADDRESS)
        assert (r.status, r.body) == (200, secret)
        # It is the site's node that answered: it keeps the file now.
        origin, file_id = get_url.split("/files/", 1)[1].split("/")[:2]
        assert (fed.raleigh.dir / "data" / "files" / origin / file_id).exists()
        # A certificate for another name is refused by the client: the
        # node presents the org's, not its own.
        with pytest.raises(ssl.SSLCertVerificationError):
            await request(get_url.replace(HOST, "raleigh.example"), ctx, address=SITE_ADDRESS)

    asyncio.run(scenario())
