SUMMARY = "OCPP 2.0.1 charge-point agent"
DESCRIPTION = "ocpp-agent connects an EV charging station to its CSMS over OCPP 2.0.1 \
               (WebSocket, TLS), drives the station's GPIO lines and keeps an offline-safe \
               SQLite journal. It runs as the systemd service ocpp-agent.service."
HOMEPAGE = "https://github.com/ocpp-agent/ocpp-agent"
BUGTRACKER = "https://github.com/ocpp-agent/ocpp-agent/issues"
CVE_PRODUCT = "ocpp-agent"
SECTION = "net"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://LICENSE;md5=3b83ef96387f14655fc854ddc3c6bd57"

# Where the sources come from: override in local.conf or a bbappend, e.g.
#   OCPP_AGENT_GIT_URI = "git://git.example.com/ev/ocpp-agent.git;protocol=ssh;branch=main"
#   SRCREV:pn-ocpp-agent = "<commit>"
# SRCREV must be a commit whose Cargo.lock matches ocpp-agent-crates.inc (regenerate the .inc
# with scripts/yocto-crates.sh in the ocpp-agent repository, or `bitbake -c update_crates
# ocpp-agent`).
OCPP_AGENT_GIT_URI ?= "git://github.com/ocpp-agent/ocpp-agent.git;protocol=https;branch=main"
SRC_URI = "${OCPP_AGENT_GIT_URI};destsuffix=git \
           file://99-gpio.rules \
           "
SRCREV = "d7c2ac9eddf3085b2bb401ef598f05c0606999df"

# scarthgap unpacks SRC_URI into WORKDIR; styhead and later into UNPACKDIR (and walnascar and
# later reject an S outside UNPACKDIR). One spelling for all of them:
OCPP_AGENT_UNPACKDIR = "${@d.getVar('UNPACKDIR') or d.getVar('WORKDIR')}"
S = "${OCPP_AGENT_UNPACKDIR}/git"

inherit cargo cargo-update-recipe-crates systemd useradd

require ${BPN}-crates.inc

# Cargo.toml's release profile strips the binary; Yocto strips it itself (and splits the debug
# symbols into ${PN}-dbg), and its QA refuses an already stripped binary.
export CARGO_PROFILE_RELEASE_STRIP = "false"

# The crate needs Rust >= 1.85 (edition 2024, rust-version = "1.85"). Skip the recipe with a
# clear message when the build selects an older Rust (stock scarthgap: 1.75, styhead: 1.79,
# walnascar: 1.84), instead of failing deep inside do_compile.
# nooelint: oelint.task.noanonpython - a parse-time check is the point here
python __anonymous() {
    import re
    need = (1, 85)
    for var in ("PREFERRED_VERSION_rust-native", "PREFERRED_VERSION_cargo-native",
                "PREFERRED_VERSION_rust", "RUSTVERSION"):
        ver = d.getVar(var) or ""
        m = re.match(r"\s*(\d+)\.(\d+)", ver)
        if m and (int(m.group(1)), int(m.group(2))) < need:
            raise bb.parse.SkipRecipe(
                "ocpp-agent needs Rust >= %d.%d (edition 2024), but %s = \"%s\". "
                "On scarthgap add meta-lts-mixins (branch scarthgap/rust, Rust 1.91), "
                "or build with wrynose; see yocto/README.md of ocpp-agent." % (need + (var, ver)))
}

SYSTEMD_SERVICE:${PN} = "ocpp-agent.service"
SYSTEMD_AUTO_ENABLE:${PN} = "enable"

# System user ocpp-agent (group ocpp-agent), member of gpio; gpio owns /dev/gpiochip* through
# 99-gpio.rules. A BSP that already has a gpio group keeps it (useradd skips existing groups).
USERADD_PACKAGES = "${PN}"
GROUPADD_PARAM:${PN} = "--system gpio"
USERADD_PARAM:${PN} = "--system --user-group --groups gpio --no-create-home \
                       --home-dir ${localstatedir}/lib/ocpp-agent --shell /sbin/nologin \
                       ocpp-agent"

do_install:append() {
    install -d ${D}${systemd_system_unitdir}
    sed -e 's|/usr/bin/ocpp-agent|${bindir}/ocpp-agent|g' \
        -e 's|/etc/ocpp-agent|${sysconfdir}/ocpp-agent|g' \
        ${S}/systemd/ocpp-agent.service > ${D}${systemd_system_unitdir}/ocpp-agent.service
    chmod 0644 ${D}${systemd_system_unitdir}/ocpp-agent.service

    # agent.toml may hold the CSMS password: readable by root and the service only
    install -d ${D}${sysconfdir}/ocpp-agent
    install -m 0640 ${S}/config/agent.toml ${D}${sysconfdir}/ocpp-agent/agent.toml
    chown root:ocpp-agent ${D}${sysconfdir}/ocpp-agent/agent.toml

    # installed under a name of its own so that it cannot clash with a BSP's 99-gpio.rules
    install -d ${D}${nonarch_base_libdir}/udev/rules.d
    install -m 0644 ${OCPP_AGENT_UNPACKDIR}/99-gpio.rules \
        ${D}${nonarch_base_libdir}/udev/rules.d/99-ocpp-agent-gpio.rules
}

CONFFILES:${PN} = "${sysconfdir}/ocpp-agent/agent.toml"
FILES:${PN} += "${nonarch_base_libdir}/udev/rules.d/99-ocpp-agent-gpio.rules"

# rustls-native-certs reads the system trust store for wss:// to a CSMS with a public CA
RDEPENDS:${PN} += "ca-certificates"
