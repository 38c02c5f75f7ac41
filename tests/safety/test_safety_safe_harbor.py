"""HIPAA Safe Harbor identifiers beyond the checksummed basics: URLs, account and health-plan
numbers, licence numbers, vehicle and device identifiers, fax numbers, street addresses with
their city/state/ZIP lines in several countries, and a policy's own ``[pii.patterns]``.

Every example is invented for these tests. Each "found" case names the exact span, each
"not found" case a look-alike that a careless pattern would flag.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edgeward.errors import ConfigError, PolicyError
from edgeward.safety import BundledFilter, find_pii, load_policy, policy_from_dict
from edgeward.safety._identifiers import dea_valid, npi_valid, vin_valid


def _found(text: str) -> list[tuple[str, str]]:
    return [(s.type, text[s.start:s.end]) for s in find_pii(text)]


def _types(text: str) -> set[str]:
    return {t for t, _ in _found(text)}


FOUND = {
    # URL
    "url-https": ("URL", "see https://portal.example.org/records?id=7 today",
                  "https://portal.example.org/records?id=7"),
    "url-www": ("URL", "go to www.mercy-clinic.example.com.", "www.mercy-clinic.example.com"),
    "url-bare": ("URL", "the form is on stlukes-example.org now", "stlukes-example.org"),
    "url-bare-cc": ("URL", "Visit DrHouseClinic.com.au for hours", "DrHouseClinic.com.au"),
    "url-ftp": ("URL", "upload to ftp://files.example.net/in/scan.pdf", "ftp://files.example.net/in/scan.pdf"),
    "url-in-parens": ("URL", "(https://example.com/a/b)", "https://example.com/a/b"),
    # ACCOUNT: accounts and health-plan numbers after a cue
    "account-no": ("ACCOUNT", "Account no. 40017723 is overdue", "40017723"),
    "account-hash": ("ACCOUNT", "acct # 5521-0093-11 closed", "5521-0093-11"),
    "account-bare": ("ACCOUNT", "my bank account 0099887766 please", "0099887766"),
    "member-id": ("ACCOUNT", "Member ID: QZR448201937", "QZR448201937"),
    "policy-number": ("ACCOUNT", "policy number HX-7730215 renewed", "HX-7730215"),
    "group-no": ("ACCOUNT", "group no. 0071-44 on the card", "0071-44"),
    "beneficiary": ("ACCOUNT", "health plan beneficiary number 2TR7-KD3-PW15",
                    "2TR7-KD3-PW15"),
    "insurance-id": ("ACCOUNT", "Insurance ID W339201845 (primary)", "W339201845"),
    "subscriber": ("ACCOUNT", "Subscriber #: 88123-004", "88123-004"),
    # LICENSE: licence and certificate numbers, DEA and NPI with their checks
    "drivers-license": ("LICENSE", "Driver's license: K5520-1187-3301", "K5520-1187-3301"),
    "dl": ("LICENSE", "DL# T62018844 (Texas)", "T62018844"),
    "license-no": ("LICENSE", "nursing license no. RN-449172", "RN-449172"),
    "certificate": ("LICENSE", "certificate number 77-30914", "77-30914"),
    "dea": ("LICENSE", "DEA number AB1234563 on the script", "AB1234563"),
    "dea-9": ("LICENSE", "DEA: M91234563", "M91234563"),
    "npi": ("LICENSE", "prescriber NPI 1234567893", "1234567893"),
    # VEHICLE: VINs (check digit) and plates
    "vin-cue": ("VEHICLE", "VIN 1M8GDM9AXKP042788 on the title", "1M8GDM9AXKP042788"),
    "vin-no-cue": ("VEHICLE", "towed 1HGCM82633A004352 last night", "1HGCM82633A004352"),
    "vin-european": ("VEHICLE", "chassis no. WVWZZZ3CZ9E123456", "WVWZZZ3CZ9E123456"),
    "plate": ("VEHICLE", "licence plate: KX19 TNA", "KX19 TNA"),
    "plate-us": ("VEHICLE", "her plate is 8DEF274", "8DEF274"),
    "registration": ("VEHICLE", "registration number B-MW 4021", "B-MW 4021"),
    # DEVICE: serial numbers, IMEI (Luhn), UDI, MAC
    "serial": ("DEVICE", "Serial number: PX-55102-C", "PX-55102-C"),
    "s-n": ("DEVICE", "pump S/N 7Q19284X", "7Q19284X"),
    "sn-colon": ("DEVICE", "SN: 55A9031K", "55A9031K"),
    "imei": ("DEVICE", "IMEI 356938035643809 on file", "356938035643809"),
    "udi": ("DEVICE", "UDI (01)10884521062856(17)250101(10)A123",
            "(01)10884521062856(17)250101(10)A123"),
    "device-id": ("DEVICE", "device ID: GLU-2044-88", "GLU-2044-88"),
    "mac-colon": ("DEVICE", "wifi 3C:22:FB:91:0A:7E joined", "3C:22:FB:91:0A:7E"),
    "mac-cue-dots": ("DEVICE", "MAC address 001a.2b3c.4d5e", "001a.2b3c.4d5e"),
    # PHONE: fax numbers are phone numbers
    "fax": ("PHONE", "Fax: (617) 555-0143", "(617) 555-0143"),
    "fax-intl": ("PHONE", "fax +49 89 2180 5555 anytime", "+49 89 2180 5555"),
    "fax-short": ("PHONE", "Fax no. 555 0199", "555 0199"),
}


@pytest.mark.parametrize(("kind", "text", "value"), list(FOUND.values()), ids=list(FOUND))
def test_identifier_is_found(kind: str, text: str, value: str) -> None:
    assert (kind, value) in _found(text)


NOT_FOUND = {
    # URL look-alikes: file names, versions, abbreviations, code
    "file-py": ("URL", "run model.py then edit config.json"),
    "file-rs-md": ("URL", "see main.rs and README.md, then build.sh"),
    "torch-file": ("URL", "load weights.pt and data.pk"),
    "version": ("URL", "upgrade to v1.2.3 or 2.10.1"),
    "eg-ie": ("URL", "e.g. this, i.e. that, a.m. and p.m."),
    "attribute": ("URL", "user.id and x.to(device) and self.name"),
    "call": ("URL", "print df.info() and logging.info(msg)"),
    "dotnet": ("URL", "an ASP.NET Core app in VB.NET"),
    "package": ("URL", "import java.io.File"),
    "email-not-url": ("URL", "write to ana@clinic.example.org"),
    # ACCOUNT look-alikes
    "account-for": ("ACCOUNT", "this will account for 12345 of the cases"),
    "account-year": ("ACCOUNT", "my account 2024 budget review"),
    "plan-colon": ("ACCOUNT", "Plan: 2024 goals and group 3: notes"),
    "short-member": ("ACCOUNT", "member ID 12"),
    # LICENSE look-alikes and failed checks
    "software-license": ("LICENSE", "MIT license 2.0, License: Apache-2.0"),
    "dea-check": ("LICENSE", "DEA number AB1234567"),
    "dea-shape": ("LICENSE", "DEA ZZ12345"),
    "npi-check": ("LICENSE", "NPI 1234567890"),
    # VEHICLE look-alikes and failed checks
    "vin-check": ("VEHICLE", "towed 1HGCM82633A004353 last night"),
    "vin-hash": ("VEHICLE", "commit 1a2b3c4d5e6f7a8b9 merged"),
    "plate-word": ("VEHICLE", "the plate was hot"),
    "plate-lower": ("VEHICLE", "registration is open until friday"),
    # DEVICE look-alikes and failed checks
    "signal-noise": ("DEVICE", "a S/N ratio of 20 dB"),
    "serial-killer": ("DEVICE", "the serial killer was caught"),
    "imei-luhn": ("DEVICE", "IMEI 356938035643808"),
    "time": ("DEVICE", "at 12:30:45 and 10-20-30"),
    # ADDRESS look-alikes: numbers next to capitalised words
    "windows": ("ADDRESS", "I upgraded to Windows 11 last week"),
    "chapter": ("ADDRESS", "Read Chapter 12 and Section 8 first."),
    "iphone": ("ADDRESS", "my iPhone 15 and Galaxy S24 both died"),
    "route": ("ADDRESS", "We drove Route 66 in 2019."),
    "python": ("ADDRESS", "Python 3.11 is faster than Python 3.10."),
    "score": ("ADDRESS", "Final: Cowboys 28, Eagles 24 at home."),
    "list": ("ADDRESS", "Top 10 Tips for World War 2 history"),
    "date": ("ADDRESS", "It ended on 18 December 2022 in Qatar."),
    "bullets": ("ADDRESS", "* Point 1\n* Point 2\n* Point 3"),
    "discography": ("ADDRESS", "Back 2 Base (2006)\nInsomnia (2007)\nTruth (2009)"),
    "ip-address-cue": ("ADDRESS", "block suspicious IP addresses with Python 3 scripts"),
    "code-label": ("ADDRESS", 'address: String::from("127.0.0.1"),'),
    "suite-test": ("ADDRESS", "the test suite 2 failed and unit 3 passed"),
}


@pytest.mark.parametrize(("kind", "text"), list(NOT_FOUND.values()), ids=list(NOT_FOUND))
def test_look_alike_is_not_flagged(kind: str, text: str) -> None:
    assert kind not in _types(text), _found(text)


def test_checksums() -> None:
    assert dea_valid("AB1234563") and dea_valid("ab 1234563") and not dea_valid("AB1234564")
    assert not dea_valid("A11234563")  # the second character is a letter or 9
    assert npi_valid("1234567893") and not npi_valid("1234567890")
    assert not npi_valid("3234567893")  # NPIs start with 1 or 2
    assert vin_valid("1HGCM82633A004352") and vin_valid("1M8GDM9AXKP042788")  # X check digit
    assert not vin_valid("1HGCM82633A004353") and not vin_valid("1HGCM82633A00435")
    assert not vin_valid("IHGCM82633A004352")  # no I, O or Q in a VIN


ADDRESSES = {
    "us": ("Please send the records to 742 Evergreen Terrace, Springfield, IL 62704 by Friday.",
           "742 Evergreen Terrace, Springfield, IL 62704"),
    "us-zip4": ("Mail it to 1200 Harbor Blvd NW, Suite 310, Tacoma, WA 98402-1234.",
                "1200 Harbor Blvd NW, Suite 310, Tacoma, WA 98402-1234"),
    "us-block": ("Billing:\n  55 Cedar Hollow Road\n  Apt. 4\n  Burlington\n  VT 05401\nThanks",
                 "55 Cedar Hollow Road\n  Apt. 4\n  Burlington\n  VT 05401"),
    "us-city-line": ("Springfield, IL 62704", "Springfield, IL 62704"),
    "uk": ("Our office: 14 Kestrel Lane, Leeds LS6 2QT, United Kingdom",
           "14 Kestrel Lane, Leeds LS6 2QT, United Kingdom"),
    "canada": ("Ship to 350 Maple Ave, Kingston, ON K7L 3N6",
               "350 Maple Ave, Kingston, ON K7L 3N6"),
    "netherlands": ("Bezoekadres: Lindengracht 41, 7412 SL Deventer",
                    "Lindengracht 41, 7412 SL Deventer"),
    "poland": ("Adres: ul. Ogrodowa 17, 53-320 Wrocław", "ul. Ogrodowa 17, 53-320 Wrocław"),
    "sweden": ("Leverans till Björkvägen 9, 394 13 Kalmar", "Björkvägen 9, 394 13 Kalmar"),
    "germany": ("Wohnt in der Lindenstraße 5, 10115 Berlin", "Lindenstraße 5, 10115 Berlin"),
    "france": ("Elle habite au 12 rue des Lilas, 69003 Lyon.", "12 rue des Lilas, 69003 Lyon"),
    "spain": ("Casa: Calle del Olmo 15, 3º B, 28013 Madrid",
              "Calle del Olmo 15, 3º B, 28013 Madrid"),
    "italy": ("Indirizzo: Via dei Mille 8, 00185 Roma RM", "Via dei Mille 8, 00185 Roma RM"),
    "portugal": ("Contacto: Rua das Flores 100, 1100-053 Lisboa, Portugal",
                 "Rua das Flores 100, 1100-053 Lisboa, Portugal"),
    "hungary": ("Címe: Petőfi tér 19., Szeged", "Petőfi tér 19., Szeged"),
    "military-apo": ("PSC 4120, Box 2207, APO AE 09456", "PSC 4120, Box 2207, APO AE 09456"),
    "military-ship": ("USS Halvorsen\nFPO AP 96601", "USS Halvorsen\nFPO AP 96601"),
    "po-box": ("Write to P.O. Box 4471, Dayton, OH 45401", "P.O. Box 4471, Dayton, OH 45401"),
    "apartment-alone": ("He lives in Apt 4B on the third floor.", "Apt 4B"),
    "zip-cue": ("What is the ZIP code 02139 area like?", "02139"),
    "postcode-cue": ("postcode: EH1 1YZ please", "EH1 1YZ"),
    "corner": ("Meet at the corner of Elm Street and Grand Avenue.",
               "the corner of Elm Street and Grand Avenue"),
    "name-number-cue": ("She lives on Calle Mayor 23 now.", "Calle Mayor 23"),
    "label": ("Address: 9 Quarry Hill Road, Tenby", "9 Quarry Hill Road, Tenby"),
}


@pytest.mark.parametrize(("text", "value"), list(ADDRESSES.values()), ids=list(ADDRESSES))
def test_address_is_found_with_its_city_and_postal_code(text: str, value: str) -> None:
    assert ("ADDRESS", value) in _found(text)


def test_an_address_block_stops_at_the_phone_line() -> None:
    text = "Rosa Example\n18 Mill Street\nApt. 2\nBoston\nMA 02110\n(617) 555-0143 office"
    found = [(t, v) for t, v in _found(text) if t in ("ADDRESS", "PHONE")]
    assert found == [("ADDRESS", "18 Mill Street\nApt. 2\nBoston\nMA 02110"),
                     ("PHONE", "(617) 555-0143")]


def test_accented_addresses_survive_the_normaliser() -> None:
    """The filter matches on normalised text, where "tér" is "ter" and "ß" may change."""
    flt = BundledFilter(policy_from_dict({"checks": {"enabled": ["pii"]}}))
    v = flt.check("Címe: Petőfi tér 19., Szeged")
    assert v.action == "redact" and v.redacted_text == "Címe: [ADDRESS]"


# --- [pii.patterns] -------------------------------------------------------------------------

def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(text, encoding="utf-8")
    return path


_PATTERNS_TOML = """
[checks]
enabled = ["pii"]

[pii]
types = ["EMAIL", "MRN", "ACCOUNT"]

[pii.patterns]
MRN = ['\\bCHT-\\d{6}\\b']
ACCOUNT = ['\\bHC(\\d{8})\\b', 'ref=([A-Z]{3}\\d{4})']
"""


def test_policy_patterns_are_loaded_and_recorded(tmp_path: Path) -> None:
    policy = load_policy(_write(tmp_path, _PATTERNS_TOML))
    assert [p.pattern for p in policy.pii_patterns["MRN"]] == [r"\bCHT-\d{6}\b"]
    assert len(policy.pii_patterns["ACCOUNT"]) == 2
    assert policy.to_dict()["pii_patterns"] == {
        "MRN": [r"\bCHT-\d{6}\b"], "ACCOUNT": [r"\bHC(\d{8})\b", r"ref=([A-Z]{3}\d{4})"]}


def test_policy_patterns_are_applied_by_the_filter(tmp_path: Path) -> None:
    flt = BundledFilter(load_policy(_write(tmp_path, _PATTERNS_TOML)))
    v = flt.check("Chart CHT-004512, card HC20241177, ref=QRS1234 and CHT-12 stays")
    assert v.action == "redact"
    # a pattern with a group redacts the group only
    assert v.redacted_text == "Chart [MRN], card HC[ACCOUNT], ref=[ACCOUNT] and CHT-12 stays"


def test_policy_patterns_are_applied_to_streamed_output(tmp_path: Path) -> None:
    flt = BundledFilter(load_policy(_write(tmp_path, _PATTERNS_TOML)))
    stream = flt.output_stream()
    out = stream.feed("Your chart is CHT-004512, see you soon.").emit
    out += stream.finish().emit
    assert out == "Your chart is [MRN], see you soon."


def test_without_patterns_the_same_text_is_not_redacted(tmp_path: Path) -> None:
    flt = BundledFilter(policy_from_dict({"checks": {"enabled": ["pii"]},
                                          "pii": {"types": ["MRN", "ACCOUNT"]}}))
    assert flt.check("Chart CHT-004512, card HC20241177").action == "allow"


def test_find_pii_takes_patterns_only_for_wanted_types() -> None:
    patterns = {"MRN": [re.compile(r"\bCHT-\d{6}\b")]}
    text = "see CHT-004512"
    assert find_pii(text, ["MRN"], patterns=patterns)[0].type == "MRN"
    assert find_pii(text, ["EMAIL"], patterns=patterns) == []


@pytest.mark.parametrize(("patterns", "needles"), [
    pytest.param("MRN = ['\\bMRN-(\\d{6}\\b']",
                 ["[pii.patterns] MRN", "MRN-(", "not a valid regular expression",
                  "missing ), unterminated subpattern"], id="bad-regex"),
    pytest.param("PASSPORT = ['X\\d+']", ["[pii.patterns] PASSPORT", "not a PII type"],
                 id="unknown-type"),
    pytest.param("NAME = ['Dr\\. \\w+']", ["[pii.patterns] NAME", "not in [pii] types"],
                 id="type-not-detected"),
    pytest.param("MRN = ['(?:\\d{6})?']", ["[pii.patterns] MRN", "matches the empty string"],
                 id="empty-match"),
    pytest.param("MRN = '\\d{6}'", ["[pii.patterns] MRN", "expected list"], id="not-a-list"),
    pytest.param("MRN = [6]", ["[pii.patterns] MRN", "strings"], id="not-strings"),
    pytest.param("MRN = ['" + "x" * 300 + "']", ["[pii.patterns] MRN", "1 to 256 characters"],
                 id="too-long"),
    pytest.param("MRN = [" + ", ".join(f"'M{i}-\\d+'" for i in range(33)) + "]",
                 ["[pii.patterns] MRN", "more than 32 patterns"], id="too-many"),
])
def test_bad_policy_patterns_name_file_key_and_problem(tmp_path: Path, patterns: str,
                                                        needles: list[str]) -> None:
    path = _write(tmp_path, f'[pii]\ntypes = ["MRN"]\n\n[pii.patterns]\n{patterns}\n')
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    assert isinstance(err.value, ConfigError)
    message = str(err.value)
    assert str(path) in message
    for needle in needles:
        assert needle in message, message
