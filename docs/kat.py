import hashlib, json
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization
def key(seed):
    k = Ed25519PrivateKey.from_private_bytes(bytes([seed])*32)
    pub = k.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return k, pub
def jcs(o): return json.dumps(o, sort_keys=True, separators=(',',':'), ensure_ascii=False).encode()
k1, p1 = key(1)
commit = hashlib.sha256(bytes([2])*16 + b'{"a":1}').hexdigest()
hdr = {"author": p1.hex(), "commitment": commit, "kind": "medical_report", "nonce": "03"*16, "time": 1700000000000, "v": 1}
j = jcs(hdr); sig = k1.sign(b"medledger/tx/v1\n" + j)
print("tx commitment", commit); print("tx sig", sig.hex()); print("tx id", hashlib.sha256(b"\x00"+j+sig).hexdigest())
k5, p5 = key(5)
bh = {"first_leaf":10,"height":3,"log_root":"aa"*32,"log_size":12,"prev_hash":"bb"*32,"proposer":p5.hex(),"time":1700000000123,"tx_count":2,"txs_root":"cc"*32,"v":1}
m = b"medledger/block/v1\n"+jcs(bh)
print("block hash", hashlib.sha256(m).hexdigest()); print("block sig", k5.sign(m).hex())
print("key7 pub", key(7)[1].hex())
