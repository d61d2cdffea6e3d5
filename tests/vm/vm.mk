# The QEMU VM that tests the kernel WireGuard backend against a real kernel
# WireGuard (this host's kernel has none): tests/vm/run.sh boots Debian's
# kernel under full emulation with an initramfs of busybox, zmesh, wg, ip
# and ping. Include after DEB_PKGS is defined.

# qemu-system-x86: the emulator; busybox-static: the VM's userland;
# cpio: the initramfs; kmod: depmod for the module subset.
# (apt and dpkg fetch and unpack the kernel package; both come with Debian.)
VM_DEB_PKGS := qemu-system-x86 busybox-static cpio kmod
DEB_PKGS += $(VM_DEB_PKGS)

VM_DIR ?= $(BUILD)/vm

.PHONY: vm-prepare vm-test vm-clean

# Fetch the kernel and build the initramfs now (both are cached in VM_DIR).
vm-prepare: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)ZMESH_BIN=$(CURDIR)/$(HOST) ZMESH_VM_DIR=$(CURDIR)/$(VM_DIR) tests/vm/run.sh --prepare

# Only the VM tests.
vm-test: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)ZMESH_VM_DIR=$(CURDIR)/$(VM_DIR) $(BUSTED) $(BUSTED_FLAGS) tests/integration/wg_kernel_spec.lua

vm-clean:
	rm -rf $(VM_DIR)
