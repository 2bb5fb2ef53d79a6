"""PWG HCD (PEN 0x002935) and the ITA-HSR test attributes (Command, Dummy)
against bytes written out by hand from strongSwan's tables (``pwg_attr.h``,
``ita_attr.h``, the ``imc-hcd`` option documentation and its test
configuration), not from nac's encoder; and the refusals strongSwan's
parsers make (a boolean of 2, a version of 15 octets, a NUL in a string).
Round trips and random input for every class are in test_pa_tnc.py."""

from __future__ import annotations

from twisted.trial import unittest

from nac.pa import PaMessage, PaTncError, PaTncErrorCode, PaVendor, attribute_type_name, parse_attribute
from nac.pa.ietf import ForwardingStatus, PortEntry
from nac.pa.ita import ItaCommand, ItaDummy, ItaSubtype, TestCommand
from nac.pa.pwg import (
    AttributesNaturalLanguage,
    CertificationState,
    DefaultPasswordEnabled,
    FirewallSetting,
    FirmwareName,
    FirmwareVersion,
    HcdForwardingEnabled,
    PstnFaxEnabled,
    PwgAttributeType,
    PwgSubtype,
    SoftwareVersion,
    UserApplicationVersion,
    VendorSmiCode,
    attribute_key,
)

H = bytes.fromhex


def message(*attributes: bytes) -> bytes:
    """A PA-TNC message (version 1, message id 7) around hand-built attributes."""
    return H("01 000000 00000007") + b"".join(attributes)


class HandBuiltBytesTests(unittest.TestCase):
    """Each vector: flags + vendor (4 octets), type (4), length including the
    12-octet header (4), value."""

    VECTORS = [
        # ITA-HSR Command (1) "allow" with NOSKIP, as strongSwan's imc-test sends it
        (H("80 00902a 00000001 00000011") + b"allow", ItaCommand(TestCommand.ALLOW, noskip=True)),
        # ITA-HSR Dummy (2) of 3 octets of 0xdd with NOSKIP
        (H("80 00902a 00000002 0000000f dddddd"), ItaDummy.of_size(3, noskip=True)),
        # PWG VendorSMICode (4): reserved octet, PEN 36906 (0x00902a, the test configuration's)
        (H("00 002935 00000004 00000010 00 00902a"), VendorSmiCode(36906)),
        # PWG FirmwareVersion (63 = 0x3f): imc-hcd's test value 00000001000000000000000700000000,
        # major 1, minor 0, build 7, service pack 0.0
        (H("00 002935 0000003f 0000001c 00000001 00000000 00000007 0000 0000"),
         FirmwareVersion(SoftwareVersion(1, 0, 7))),
        # PWG UserApplicationVersion (103 = 0x67): 00000005000000020000000300080001 = 5.2.3.8.1
        (H("00 002935 00000067 0000001c 00000005 00000002 00000003 0008 0001"),
         UserApplicationVersion(SoftwareVersion(5, 2, 3, 8, 1))),
        # PWG DefaultPasswordEnabled (20 = 0x14): a 32-bit boolean, yes
        (H("00 002935 00000014 00000010 00000001"), DefaultPasswordEnabled(True)),
        # PWG PSTNFaxEnabled (40 = 0x28): no
        (H("00 002935 00000028 00000010 00000000"), PstnFaxEnabled(False)),
        # PWG ForwardingEnabled (22 = 0x16): the IETF values, 2 = unknown
        (H("00 002935 00000016 00000010 00000002"), HcdForwardingEnabled(ForwardingStatus.UNKNOWN)),
        # PWG AttributesNaturalLanguage (1): "en", a string without length or NUL
        (H("00 002935 00000001 0000000e") + b"en", AttributesNaturalLanguage("en")),
        # PWG FirmwareName (60 = 0x3c)
        (H("00 002935 0000003c 00000013") + b"ABC 1.0", FirmwareName("ABC 1.0")),
        # PWG FirewallSetting (21 = 0x15): Port Filter entries, tcp/631 open, udp/161 blocked
        (H("00 002935 00000015 00000014 00 06 0277 01 11 00a1"),
         FirewallSetting((PortEntry(6, 631, False), PortEntry(17, 161, True)))),
        # PWG CertificationState (200 = 0xc8): opaque octets
        (H("00 002935 000000c8 0000000f 000102"), CertificationState(H("000102"))),
    ]

    def test_built_as_written(self):
        for wire, attribute in self.VECTORS:
            self.assertEqual(attribute.build(), wire, attribute)

    def test_parsed_as_written(self):
        data = message(*(wire for wire, _ in self.VECTORS))
        parsed = PaMessage.parse(data)
        self.assertEqual(parsed.attributes, tuple(attribute for _, attribute in self.VECTORS))
        self.assertEqual(PaMessage(7, parsed.attributes).build(), data)

    def test_names_and_numbers_follow_strongswan(self):
        self.assertEqual(attribute_type_name(PaVendor.PWG, 0x69), "PWG/HCD UserApplicationPersistenceEnabled")
        self.assertEqual(attribute_type_name(PaVendor.ITA_HSR, 2), "ITA-HSR/Dummy")
        self.assertEqual((PwgSubtype.HCD_SYSTEM, PwgSubtype.HCD_CONSOLE, PwgSubtype.HCD_MARKER,
                          PwgSubtype.HCD_FINISHER, PwgSubtype.HCD_INTERFACE, PwgSubtype.HCD_SCANNER),
                         (0x05, 0x04, 0x0A, 0x1E, 0x28, 0x32))
        self.assertEqual((PwgAttributeType.CERTIFICATION_STATE, PwgAttributeType.CONFIGURATION_STATE), (200, 201))
        self.assertEqual(int(ItaSubtype.TEST), 1)
        self.assertEqual(PwgSubtype.HCD_INPUT_TRAY.section, "input_tray")
        self.assertEqual(attribute_key(PwgAttributeType.DEFAULT_PASSWORD_ENABLED), "default_password_enabled")

    def test_dummy_content_is_not_checked(self):
        [dummy] = PaMessage.parse(message(H("00 00902a 00000002 0000000e 0001"))).attributes
        self.assertEqual((dummy.size, dummy.value), (2, H("0001")))
        with self.assertRaises(ValueError):
            ItaDummy.of_size(-1)


class RefusalTests(unittest.TestCase):
    """Values strongSwan's generic parsers refuse are Invalid Parameter at
    the byte that is wrong."""

    def refuse(self, attribute: bytes) -> PaTncError:
        with self.assertRaises(PaTncError) as caught:
            PaMessage.parse(message(attribute))
        self.assertEqual(caught.exception.code, PaTncErrorCode.INVALID_PARAMETER)
        return caught.exception

    def test_boolean_other_than_0_or_1(self):
        err = self.refuse(H("00 002935 00000014 00000010 00000002"))
        self.assertEqual(err.offset, 8 + 12)
        self.assertIn("not 0 or 1", str(err))

    def test_fixed_sizes(self):
        # a version of 15 octets, a boolean of 3, an SMI code of 5: the length field is wrong
        for attribute in (H("00 002935 0000003f 0000001b") + bytes(15),
                          H("00 002935 00000014 0000000f 000001"),
                          H("00 002935 00000004 00000011 0000902a00")):
            self.assertEqual(self.refuse(attribute).offset, 8 + 8)

    def test_strings_are_utf8_without_nul(self):
        self.assertEqual(self.refuse(H("00 002935 00000003 0000000f 41 00 42")).offset, 8 + 13)
        self.assertIn("UTF-8", str(self.refuse(H("00 002935 00000003 0000000e ff41"))))

    def test_forwarding_value_beyond_unknown(self):
        self.refuse(H("00 002935 00000016 00000010 00000003"))

    def test_firewall_setting_of_partial_entries(self):
        self.refuse(H("00 002935 00000015 00000012 00060277 0011"))

    def test_vendor_smi_code_ignores_the_reserved_octet(self):
        attribute, _ = parse_attribute(H("00 002935 00000004 00000010 ff 00902a"), 0)
        self.assertEqual(attribute, VendorSmiCode(0x902A))
        self.assertEqual(attribute.build(), H("00 002935 00000004 00000010 00 00902a"))
