"""C2SP signed notes and checkpoints, Ed25519 keys and key files."""

import independent as ref
import pytest

from medledger import Checkpoint, FormatError, KeyFileError, SignatureError, SigningKey, Trust, Verifier
from medledger.keys import is_weak_public_key, verify_signature
from medledger.note import Note

# The example of c2sp.org/signed-note.
SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_NOTE = ("This is an example message.\n\n"
             "\u2014 example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n")
# Pinned by crates/formats/src/checkpoint.rs (signer seed 0x00..0x1f).
ORIGIN = "medledger.example/log"
KAT_SIGNED = ("medledger.example/log\n7\nRWuLv/QhdtsvzuSN7y1e7mPt1/eQwi456BS2mcDHwQg=\n\n"
              "\u2014 medledger.example/log SKCwgi7yOxQJXpYZi3nQbJY8RdI7i6vLRWH0IpJnFoHGFqZ0T39dv2IUcO8GJa9X/z5Uav5CPXQAINggFJaC0f98sQM=\n")


def kat_trust():
    _, pub = ref.seed_key(bytes(range(32)))
    return Trust.from_vkey(ref.vkey(ORIGIN, pub))


def test_spec_example_note_verifies():
    v = Verifier.parse(SPEC_VKEY)
    assert v.vkey() == SPEC_VKEY
    assert Note.parse(SPEC_NOTE).verify([v]) == [v]


def test_spec_note_tampered_is_refused():
    v = Verifier.parse(SPEC_VKEY)
    with pytest.raises(SignatureError):
        Note.parse(SPEC_NOTE.replace("example message", "example massage")).verify([v])


def test_checkpoint_known_answer_verifies_and_reads():
    cp = Checkpoint.verify(KAT_SIGNED, kat_trust())
    assert (cp.origin, cp.size) == (ORIGIN, 7)
    assert cp.root == ref.sha(b"medledger")
    assert cp.note == KAT_SIGNED


def test_checkpoint_from_independent_signer_verifies():
    key, pub = ref.seed_key(bytes([42]) * 32)
    note = ref.checkpoint("hospital.example/ledger", 12, ref.sha(b"r"), key, pub)
    cp = Checkpoint.verify(note, Trust.from_vkey(ref.vkey("hospital.example/ledger", pub)))
    assert cp.size == 12


@pytest.mark.parametrize("mutate", [
    lambda s: s.replace("\n7\n", "\n8\n"),                        # size changed
    lambda s: s.replace("RWuL", "RWuM"),                          # root changed
    lambda s: s.replace("SKCwgi7y", "SKCwgi7z"),                  # signature bit
    lambda s: s[:-1],                                             # no final newline
    lambda s: s.replace("\n\n", "\n"),                            # no separator
    lambda s: s.replace("\u2014 ", "- "),                         # not an em dash
    lambda s: s.replace("medledger.example/log\n7", "other.example/log\n7"),  # origin
])
def test_tampered_checkpoints_are_refused(mutate):
    with pytest.raises((SignatureError, FormatError)):
        Checkpoint.verify(mutate(KAT_SIGNED), kat_trust())


def test_checkpoint_by_another_key_or_name_is_refused():
    key, pub = ref.seed_key(bytes([5]) * 32)
    forged = ref.checkpoint(ORIGIN, 7, ref.sha(b"medledger"), key, pub)
    with pytest.raises(SignatureError, match="no signature from a trusted key"):
        Checkpoint.verify(forged, kat_trust())
    # Signed by a trusted key that is not named after the origin.
    note = ref.sign_note(f"{ORIGIN}\n7\n{'A' * 43}=\n", "witness.example", key, pub)
    trust = Trust(ORIGIN, kat_trust().verifiers + [Verifier.parse(ref.vkey("witness.example", pub))])
    with pytest.raises(SignatureError):
        Checkpoint.verify(note, trust)


def test_unknown_signatures_are_ignored_but_a_bad_trusted_one_sinks_the_note():
    key, pub = ref.seed_key(bytes([5]) * 32)
    extra = ref.sign_note("x\n", "witness.example", key, pub).split("\n\n")[1]
    Checkpoint.verify(KAT_SIGNED + extra, kat_trust())
    bad = KAT_SIGNED.replace("SKCwgi7y", "SKCwgi7z")
    with pytest.raises(SignatureError):
        Checkpoint.verify(KAT_SIGNED + bad.split("\n\n")[1], kat_trust())


def test_malformed_vkeys_are_refused():
    for bad in ["", "example.com/foo", "example.com/foo+530d903b+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
                "example.com/foo+530D903A+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
                "example.com/foo+530d903a+BekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
                "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2"]:
        with pytest.raises((FormatError, SignatureError)):
            Verifier.parse(bad)


def _speccheck(testdata):
    lines = (testdata / "ed25519-speccheck" / "cases.txt").read_text().split("\n")
    n = int(lines[0])
    return [tuple(bytes.fromhex(l.split("=", 1)[1]) for l in lines[1 + 3 * i: 4 + 3 * i]) for i in range(n)]


# The ledger's rule (ZIP-215, crates/formats/src/sig.rs) accepts these cases.
ZIP215 = [True, True, True, True, True, True, False, False, False, True, True, True]


def test_speccheck_never_accepts_what_the_ledger_refuses(testdata):
    for i, (msg, pk, sig) in enumerate(_speccheck(testdata)):
        try:
            verify_signature(pk, msg, sig)
            accepted = True
        except SignatureError:
            accepted = False
        assert not accepted or ZIP215[i], f"case {i} accepted, ZIP-215 refuses it"
        # Small-order keys (cases 0, 1, 10, 11) prove nothing and are refused.
        if i in (0, 1, 10, 11):
            assert is_weak_public_key(pk) and not accepted, i


def test_ordinary_signatures_pass_and_flips_fail():
    k = SigningKey.from_seed(bytes([9]) * 32)
    sig = k.sign(b"m")
    verify_signature(k.public_key, b"m", sig)
    with pytest.raises(SignatureError):
        verify_signature(k.public_key, b"n", sig)
    assert not is_weak_public_key(k.public_key)


def test_key_file_known_answer_and_round_trip(tmp_path):
    # Pinned by crates/formats/src/keys.rs.
    text = ('{"kind":"ed25519","public_key":"ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c",'
            '"secret_key":"0707070707070707070707070707070707070707070707070707070707070707","v":1}\n')
    k = SigningKey.from_key_file_text(text)
    assert k.key_file_text() == text
    assert k.public_key == ref.seed_key(bytes([7]) * 32)[1]
    g = SigningKey.generate()
    g.save(tmp_path / "a.key")
    assert (tmp_path / "a.key").stat().st_mode & 0o777 == 0o600
    assert SigningKey.load(tmp_path / "a.key").public_key == g.public_key
    with pytest.raises(FileExistsError):
        g.save(tmp_path / "a.key")


def test_tampered_key_files_are_refused():
    text = SigningKey.from_seed(bytes([7]) * 32).key_file_text()
    with pytest.raises(KeyFileError, match="does not match"):
        SigningKey.from_key_file_text(text.replace("ea4a", "ea4b"))
    for bad in ["not json", "{}", text.replace('"v":1', '"v":2'), text.replace("ed25519", "rsa")]:
        with pytest.raises(KeyFileError):
            SigningKey.from_key_file_text(bad)


# Pinned by crates/formats/src/cosignature.rs (seed 0x00..0x1f, time 1795478400).
COSIG_TEXT = "medledger.example/log\n3\nlPvQ3YNvUDAWkubQ6t5yjuGexSv/8WBu2AfIV11aqhk=\n"
COSIG_VKEY = "witness.example/w1+e75f6532+BAOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4"
COSIG_LINE = ("\u2014 witness.example/w1 519lMgAAAABrBNOAMi/txefGv09TDSwAtP/dZDyBm+fiBAOD2wEH9UyqxJAaIRW+"
              "DUnE4u39ZNFvXOIUMQTDumpj5etuq7cJUtQiAQ==\n")


def _cosign(text, name, seed, ts):
    import base64
    import struct
    key, pub = ref.seed_key(seed)
    kid = ref.sha(name.encode() + b"\n\x04" + pub)[:4]
    sig = key.sign(f"cosignature/v1\ntime {ts}\n".encode() + text.encode())
    vkey = f"{name}+{kid.hex()}+{base64.b64encode(bytes([4]) + pub).decode()}"
    return f"\u2014 {name} {base64.b64encode(kid + struct.pack('>Q', ts) + sig).decode()}\n", vkey


def test_cosignature_known_answer_and_quorum():
    from medledger import verify_cosignatures

    line, vkey = _cosign(COSIG_TEXT, "witness.example/w1", bytes(range(32)), 1795478400)
    assert (line, vkey) == (COSIG_LINE, COSIG_VKEY)
    line2, vkey2 = _cosign(COSIG_TEXT, "witness.example/w2", bytes([9]) * 32, 1795478401)
    note = COSIG_TEXT + "\n" + COSIG_LINE + line2
    assert verify_cosignatures(note, [COSIG_VKEY, vkey2], 2) == {"witness.example/w1": 1795478400, "witness.example/w2": 1795478401}
    with pytest.raises(SignatureError, match="1 of the required 2"):
        verify_cosignatures(COSIG_TEXT + "\n" + COSIG_LINE, [COSIG_VKEY, vkey2], 2)
    forged = COSIG_LINE.replace("519lMgAAAABrBNOA", "519lMgAAAABrBNOB")  # timestamp changed
    with pytest.raises(SignatureError):
        verify_cosignatures(COSIG_TEXT + "\n" + forged, [COSIG_VKEY], 1)
    with pytest.raises(FormatError):
        verify_cosignatures(note, [SPEC_VKEY], 1)  # a type 0x01 key is not a cosigner key
