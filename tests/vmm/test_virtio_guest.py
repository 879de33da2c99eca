"""kiln-vmm's virtio-mmio transport and virtio-blk against tiny guests
(tests/vmm/guests/virtq_*.S, helpers in virtq_lib.h) that drive the device
through its MMIO registers like a driver would.

One guest reads sector 0 correctly; the others hand the device malformed
queues (an address outside RAM, a descriptor loop, a buffer running past the
end of RAM, a head index out of range, a 3-entry queue, a short request
header) and check that it answers with DEVICE_NEEDS_RESET in its Status
register and recovers after a reset. kiln-vmm must survive every one: the
exit status comes from the guest, and the `vmm` fixture fails the test on a
crash or a sanitizer report.
"""

import pytest

pytestmark = pytest.mark.kvm

SECTOR0 = b"KILN-DISK-SECT0!"


@pytest.fixture
def disk(tmp_path):
    """A 4 KiB raw image whose first bytes are SECTOR0."""
    p = tmp_path / "disk.img"
    p.write_bytes(SECTOR0 + bytes(range(256)) * 15 + bytes(256 - len(SECTOR0)))
    return p


def assert_guest_ok(r, done):
    assert "FAIL" not in r.stdout, r.describe()
    assert r.returncode == 0, "expected exit status 0" + r.describe()
    assert done in r.stdout, r.describe()


def test_read_sector0(vmm, disk):
    before = disk.read_bytes()
    r = vmm.boot("virtq_read", "--disk", disk)
    assert_guest_ok(r, "virtq read ok\n")
    assert f"sector 0: {SECTOR0.decode()}\n" in r.stdout, r.describe()
    assert not r.error_lines(), r.describe()
    assert disk.read_bytes() == before


def test_read_sector0_rw_disk(vmm, disk):
    r = vmm.boot("virtq_read", "--disk", f"{disk},rw")
    assert_guest_ok(r, "virtq read ok\n")
    assert f"sector 0: {SECTOR0.decode()}\n" in r.stdout, r.describe()


def test_virtio_args_on_cmdline(vmm, disk, tmp_path):
    other = tmp_path / "other.img"
    other.write_bytes(bytes(4096))
    r = vmm.boot("status", "--disk", disk, "--disk", f"{other},ro",
                 "--cmdline", "status=0 -- init args")
    assert r.returncode == 0, r.describe()
    line = next(l for l in r.stdout.splitlines() if l.startswith("cmdline: "))
    a = line.find(" virtio_mmio.device=4K@0xd0001000:5 ")
    b = line.find(" virtio_mmio.device=4K@0xd0002000:6 ")
    assert 0 < a < b < line.find(" status=0 -- init args"), r.describe()


def test_no_disk_no_device(vmm):
    # Without --disk there is nothing at 0xd0001000 (reads all ones).
    r = vmm.boot("virtq_read")
    assert r.returncode == 1, r.describe()
    assert "FAIL: virtio magic" in r.stdout, r.describe()


def test_missing_disk_is_a_clear_error(vmm, tmp_path):
    missing = tmp_path / "nope.img"
    r = vmm.boot("virtq_read", "--disk", missing)
    assert r.returncode == 1, r.describe()
    assert any(str(missing) in l for l in r.error_lines()), r.describe()


def test_too_many_disks(vmm, disk):
    r = vmm.boot("virtq_read", *(["--disk", disk] * 5))
    assert r.returncode == 2, r.describe()


@pytest.mark.parametrize("guest,why", [
    ("virtq_badaddr", "buffer outside guest RAM"),
    ("virtq_loop", "longer than the queue"),
    ("virtq_pastend", "buffer outside guest RAM"),
    ("virtq_headoob", "head descriptor index out of range"),
    ("virtq_size3", "not a power of two"),
    ("virtq_shorthdr", "malformed request"),
])
def test_malformed_queue_needs_reset(vmm, disk, guest, why):
    before = disk.read_bytes()
    r = vmm.boot(guest, "--disk", disk)
    assert_guest_ok(r, f"{guest.replace('_', ' ')} ok\n")
    assert "the device needs a reset" in r.stderr, r.describe()
    assert why in r.stderr, r.describe()
    assert disk.read_bytes() == before


def test_vsock_lies_and_notification_flood(vmm, tmp_path):
    """vsock_attack.S: a packet whose header claims 2 GiB it does not carry,
    a payload descriptor of 4 GiB - 1 outside guest RAM, 30,000
    notifications (queue numbers valid and not), then a real connection
    that must reach the host listener and be answered."""
    import socket

    uds = tmp_path / "v.sock"
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lsock.bind(f"{uds}_1234")
    lsock.listen(8)
    lsock.settimeout(0)
    try:
        r = vmm.boot("vsock_attack", "--vsock-uds", uds, "--mem", "64")
        assert_guest_ok(r, "vsock attack ok\n")
        assert "lying length: answered with RST = 0x00000003 ok" in r.stdout, r.describe()
        # The 4 GiB descriptor broke the queue (reported), not kiln-vmm.
        assert "buffer outside guest RAM" in r.stderr, r.describe()
        assert "the device needs a reset" in r.stderr, r.describe()
        # Only the real request reached the host (the lying one was reset).
        conns = []
        while True:
            try:
                conns.append(lsock.accept()[0])
            except BlockingIOError:
                break
        assert len(conns) == 1, r.describe()
        for c in conns:
            c.close()
    finally:
        lsock.close()
