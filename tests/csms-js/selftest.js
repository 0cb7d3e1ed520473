#!/usr/bin/env node
'use strict';
/*
 * Self-test of tests/csms-js/csms.js (exit status 1 on failure), run by CI:
 *     node tests/csms-js/selftest.js
 * Starts csms.js on ephemeral ports and drives it with ocpp-rpc's RPCClient as a
 * fake charging station, plus raw HTTP for handshake failures and the admin
 * protocol over TCP. Takes a few seconds.
 */

const fs = require('fs');
const os = require('os');
const net = require('net');
const http = require('http');
const path = require('path');
const { spawn } = require('child_process');

let RPCClient, createRPCError, NOREPLY;
try {
    ({ RPCClient, createRPCError, NOREPLY } = require('ocpp-rpc'));
} catch (e) {
    console.error(`selftest.js: cannot load ocpp-rpc (${e.message}); run scripts/setup-node.sh first`);
    process.exit(1);
}

const CSMS_JS = path.join(__dirname, 'csms.js');
const PASSWORD = 'selftest-password-0123';
const ISO_Z_MS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
const LOG_T = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/;

let passed = 0;
let failed = 0;
function check(name, cond, extra) {
    if (cond) {
        passed++;
        console.log(`ok   ${name}`);
    } else {
        failed++;
        console.log(`FAIL ${name}${extra !== undefined ? ': ' + (typeof extra === 'string' ? extra : JSON.stringify(extra)) : ''}`);
    }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what, fn, timeoutMs = 5000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        const v = await fn();
        if (v) return v;
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await sleep(25);
    }
}

class Peer {
    constructor(dir, extra = []) {
        this.dir = dir;
        this.log = path.join(dir, 'csms.jsonl');
        this.portFile = path.join(dir, 'port');
        this.adminFile = path.join(dir, 'admin');
        this.stderr = '';
        this.proc = spawn(process.execPath, [CSMS_JS, '--port', '0', '--port-file', this.portFile,
            '--admin-port-file', this.adminFile, '--log', this.log, '--password', PASSWORD,
            '--ping-interval', '0', ...extra], { stdio: ['ignore', 'ignore', 'pipe'] });
        this.proc.stderr.on('data', (d) => { this.stderr += d; });
        this.exited = new Promise((r) => this.proc.once('exit', (code, signal) => r({ code, signal })));
    }

    async ready() {
        const port = await waitFor('the port file', () => {
            try {
                return parseInt(fs.readFileSync(this.portFile, 'utf8'), 10) || null;
            } catch (e) {
                return null;
            }
        }, 10000);
        this.port = port;
        this.adminPort = parseInt(fs.readFileSync(this.adminFile, 'utf8'), 10);
        this.url = `ws://127.0.0.1:${port}/ocpp`;
    }

    records() {
        let text = '';
        try {
            text = fs.readFileSync(this.log, 'utf8');
        } catch (e) { /* not yet */ }
        return text.split('\n').filter(Boolean).map((l) => JSON.parse(l));
    }

    admin(req) {
        return new Promise((resolve, reject) => {
            const sock = net.connect(this.adminPort, '127.0.0.1');
            let buf = '';
            sock.setEncoding('utf8');
            sock.on('data', (d) => {
                buf += d;
                const nl = buf.indexOf('\n');
                if (nl >= 0) {
                    sock.destroy();
                    resolve(JSON.parse(buf.slice(0, nl)));
                }
            });
            sock.on('error', reject);
            sock.write(JSON.stringify(req) + '\n');
        });
    }
}

function station(peer, identity, opts = {}) {
    return new RPCClient({
        endpoint: peer.url,
        identity,
        password: PASSWORD,
        protocols: ['ocpp2.0.1'],
        strictMode: true, // also validates the CSMS's responses
        reconnect: false,
        pingIntervalMs: 0,
        ...opts,
    });
}

/** A plain HTTP upgrade request; resolves with the response status. */
function rawUpgrade(port, urlPath, headers) {
    return new Promise((resolve, reject) => {
        const req = http.request({
            host: '127.0.0.1', port, path: urlPath,
            headers: {
                Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13',
                'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==', ...headers,
            },
        });
        req.on('upgrade', (res, socket) => {
            socket.destroy();
            resolve(res.statusCode);
        });
        req.on('response', (res) => {
            res.resume();
            resolve(res.statusCode);
        });
        req.on('error', reject);
        req.end();
    });
}

const bootPayload = { reason: 'PowerUp', chargingStation: { model: 'M1', vendorName: 'V1' } };
const ts = '2025-01-01T12:00:00.000Z';

// ---- OCPP 1.6J (--ocpp 1.6) -------------------------------------------------

const OCPP16_ERROR_CODES = new Set(['NotImplemented', 'NotSupported', 'InternalError', 'ProtocolError', 'SecurityError',
    'FormationViolation', 'PropertyConstraintViolation', 'OccurenceConstraintViolation', 'TypeConstraintViolation', 'GenericError']);

const SCHEMAS_16 = require('ocpp-rpc/lib/schemas/ocpp1_6.json');
const CS_TO_CP_16 = `RemoteStartTransaction RemoteStopTransaction ChangeConfiguration GetConfiguration Reset
    ChangeAvailability UnlockConnector ClearCache TriggerMessage ReserveNow CancelReservation
    SetChargingProfile ClearChargingProfile GetCompositeSchedule GetLocalListVersion SendLocalList
    UpdateFirmware GetDiagnostics DataTransfer ExtendedTriggerMessage CertificateSigned
    InstallCertificate DeleteCertificate GetInstalledCertificateIds GetLog SignedUpdateFirmware`.split(/\s+/);

/** A minimal instance of a JSON schema: required properties only, first enum values. */
function minimalInstance(schema, root = schema) {
    if (schema.$ref) return minimalInstance(root.definitions[schema.$ref.split('/').pop()], root);
    if (schema.enum) return schema.enum[0];
    switch (schema.type) {
    case 'object':
        return Object.fromEntries((schema.required || []).map((k) => [k, minimalInstance(schema.properties[k], root)]));
    case 'array':
        return Array.from({ length: Math.max(1, schema.minItems || 0) }, () => minimalInstance(schema.items, root));
    case 'string':
        if (schema.format === 'uri') return 'ftp://127.0.0.1/x';
        return schema.format === 'date-time' ? ts : 'x';
    case 'integer':
    case 'number':
        return Math.max(0, schema.minimum || 0);
    case 'boolean':
        return false;
    default:
        return 'x';
    }
}

/** A 1.6 charge point (ocpp-rpc, strict: it validates the CSMS's answers too) against csms.js --ocpp 1.6. */
async function v16Scenario(dir, clients, peers) {
    const stateFile = path.join(dir, 'v16-state.json');
    const v16Args = ['--ocpp', '1.6', '--quiet', '--state', stateFile, '--first-transaction-id', '41'];
    const v16Dir = path.join(dir, 'v16');
    fs.mkdirSync(v16Dir);
    const peer = new Peer(v16Dir, v16Args);
    peers.push(peer);
    await peer.ready();
    const listening = await waitFor('1.6 listening', () => peer.records().find((r) => r.event === 'listening'));
    check('1.6: listening record', listening.subprotocol === 'ocpp1.6' && listening.ocpp_version === '1.6', listening);
    const only201 = station(peer, 'CP16');
    const only201Err = await only201.connect().then(() => null, (e) => e);
    check('1.6: a station offering only ocpp2.0.1 -> HTTP 400', only201Err && only201Err.code === 400, only201Err && only201Err.message);
    const set16 = await peer.admin({ cmd: 'set', auth: { 'T-GRP': { status: 'Accepted', group: 'G1' }, 'T-INV': 'Invalid' } });
    const bad16 = await Promise.all([
        peer.admin({ cmd: 'set', auth: { T: 'Unknown' } }),
        peer.admin({ cmd: 'set', auth: { T: { status: 'Accepted', message: 'hi' } } }),
        peer.admin({ cmd: 'set', auth: { T: { status: 'Accepted', group: 'x'.repeat(21) } } }),
    ]);
    check('1.6: auth settings (1.6 statuses, no personalMessage, parentIdTag <= 20)', set16.ok === true && bad16.every((r) => r.ok === false), [set16, bad16]);

    // ---- boot, status, authorize, start, meter values, stop ----------------------
    const cp = station(peer, 'CP16', { protocols: ['ocpp1.6'] });
    clients.push(cp);
    await cp.connect();
    const boot = await cp.call('BootNotification', { chargePointVendor: 'V1', chargePointModel: 'M1' });
    check('1.6: BootNotification accepted', boot.status === 'Accepted' && boot.interval === 10 && ISO_Z_MS.test(boot.currentTime), boot);
    const hb = await cp.call('Heartbeat', {});
    check('1.6: Heartbeat answered', ISO_Z_MS.test(hb.currentTime), hb);
    const sn = await cp.call('StatusNotification', { connectorId: 1, errorCode: 'NoError', status: 'Preparing', timestamp: ts });
    check('1.6: StatusNotification answered {}', JSON.stringify(sn) === '{}', sn);
    const auth = await cp.call('Authorize', { idTag: 'T-GRP' });
    check('1.6: Authorize: status and group as parentIdTag', JSON.stringify(auth) === '{"idTagInfo":{"status":"Accepted","parentIdTag":"G1"}}', auth);
    const start = await cp.call('StartTransaction', { connectorId: 1, idTag: 'T-GRP', meterStart: 100, timestamp: ts });
    const start2 = await cp.call('StartTransaction', { connectorId: 2, idTag: 'T-INV', meterStart: 7, timestamp: ts, reservationId: 5 });
    check('1.6: StartTransaction assigns increasing ids from --first-transaction-id', start.transactionId === 41 &&
        start.idTagInfo.status === 'Accepted' && start2.transactionId === 42 && start2.idTagInfo.status === 'Invalid', [start, start2]);
    await cp.call('MeterValues', { connectorId: 1, transactionId: 41, meterValue: [{ timestamp: ts, sampledValue: [{ value: '150', unit: 'Wh' }] }] });
    await cp.call('MeterValues', { connectorId: 0, meterValue: [{ timestamp: ts, sampledValue: [{ value: '230' }] }] });
    const stop = await cp.call('StopTransaction', { transactionId: 41, meterStop: 200, timestamp: ts, idTag: 'T-GRP', reason: 'Local' });
    const stop2 = await cp.call('StopTransaction', { transactionId: 42, meterStop: 8, timestamp: ts });
    check('1.6: StopTransaction idTagInfo only with idTag', stop.idTagInfo.parentIdTag === 'G1' && JSON.stringify(stop2) === '{}', [stop, stop2]);
    for (const [action, payload, expect] of [
        ['DataTransfer', { vendorId: 'X' }, { status: 'UnknownVendorId' }],
        ['DiagnosticsStatusNotification', { status: 'Uploaded' }, {}],
        ['FirmwareStatusNotification', { status: 'Installed' }, {}],
        ['SecurityEventNotification', { type: 'StartupOfTheDevice', timestamp: ts }, {}],
        ['SignCertificate', { csr: 'abc' }, { status: 'Accepted' }],
        ['LogStatusNotification', { status: 'Uploaded', requestId: 1 }, {}],
        ['SignedFirmwareStatusNotification', { status: 'SignatureVerified', requestId: 1 }, {}],
    ]) {
        const res = await cp.call(action, payload);
        check(`1.6: ${action} answered`, JSON.stringify(res) === JSON.stringify(expect), res);
    }
    check('1.6: a valid scenario: no CALLERROR, violation or warning', !peer.records().some((r) => r.event === 'violation' ||
        r.event === 'warning' || (r.event === 'message' && r.type === 4)), peer.records().filter((r) => r.event === 'violation'));
    await cp.call('StopTransaction', { transactionId: 999, meterStop: 1, timestamp: ts });
    await cp.call('MeterValues', { connectorId: 1, transactionId: 41, meterValue: [{ timestamp: ts, sampledValue: [{ value: '9' }] }] });
    const made = peer.records().find((r) => r.event === 'violation' && r.action === 'StopTransaction');
    check('1.6: StopTransaction with an id never assigned -> violation', made && /never assigned/.test(made.reason), made);
    check('1.6: MeterValues after the stop -> warning', peer.records().some((r) => r.event === 'warning' && /already stopped/.test(r.reason)));
    const txs = await peer.admin({ cmd: 'transactions', station: 'CP16' });
    const t41 = txs.transactions && txs.transactions.find((t) => t.transaction_id === 41);
    check('1.6: admin transactions', txs.ok === true && txs.transactions.length === 2 && t41.id_tag === 'T-GRP' && t41.connector_id === 1 &&
        t41.meter_start === 100 && t41.timestamp === ts && t41.meter_values.length === 2 && t41.meter_values[0].payload.meterValue[0].sampledValue[0].value === '150' &&
        t41.stops.length === 1 && t41.stops[0].payload.meterStop === 200 && txs.transactions[1].reservation_id === 5 &&
        txs.unknown.length === 1 && txs.unknown[0].payload.transactionId === 999, txs);
    const txEv = peer.records().find((r) => r.event === 'transaction' && r.transaction_id === 41);
    const startIn = peer.records().find((r) => r.event === 'message' && r.dir === 'in' && r.action === 'StartTransaction');
    check('1.6: transaction event names the StartTransaction', txEv && startIn && txEv.message_id === startIn.id && t41.message_id === startIn.id, txEv);

    // ---- invalid messages: 1.6 CALLERROR codes ---------------------------------------
    const bad = [
        ['b16-required', [2, 'b16-required', 'BootNotification', { chargePointVendor: 'V' }], 'OccurenceConstraintViolation'],
        ['b16-enum', [2, 'b16-enum', 'StatusNotification', { connectorId: 1, errorCode: 'NoError', status: 'Sideways' }], 'FormationViolation'],
        ['b16-extra', [2, 'b16-extra', 'Heartbeat', { foo: 1 }], 'PropertyConstraintViolation'],
        ['b16-type', [2, 'b16-type', 'StatusNotification', { connectorId: '1', errorCode: 'NoError', status: 'Available' }], 'TypeConstraintViolation'],
        ['b16-long', [2, 'b16-long', 'Authorize', { idTag: 'x'.repeat(21) }], 'FormationViolation'],
        ['b16-notz', [2, 'b16-notz', 'StatusNotification', { connectorId: 1, errorCode: 'NoError', status: 'Available', timestamp: '2025-01-01T12:00:00' }], 'FormationViolation'],
        ['b16-201', [2, 'b16-201', 'TransactionEvent', {}], 'NotImplemented'],
        ['b16-direction', [2, 'b16-direction', 'Reset', { type: 'Hard' }], 'NotSupported'],
    ];
    for (const [, frame] of bad) cp.sendRaw(JSON.stringify(frame));
    cp.sendRaw('[5,"b16-mtype","Heartbeat",{}]');
    const errOut = (id) => peer.records().find((r) => r.event === 'message' && r.dir === 'out' && r.type === 4 && r.id === id);
    await waitFor('1.6 CALLERRORs', () => errOut('b16-mtype') && errOut('b16-direction'));
    for (const [id, , code] of bad) check(`1.6: invalid ${id} -> CALLERROR ${code}`, errOut(id) && errOut(id).error_code === code, errOut(id));
    check('1.6: unknown MessageTypeId -> FormationViolation', errOut('b16-mtype').error_code === 'FormationViolation', errOut('b16-mtype'));
    const codes = peer.records().filter((r) => r.event === 'message' && r.dir === 'out' && r.type === 4).map((r) => r.error_code);
    check('1.6: only 1.6 error codes sent', codes.length === 9 && codes.every((c) => OCPP16_ERROR_CODES.has(c)), codes);
    const frac = await cp.call('StatusNotification', { connectorId: 1, errorCode: 'NoError', status: 'Available', timestamp: '2025-01-01T12:00:00.123456Z' });
    check('1.6: any number of fractional digits', JSON.stringify(frac) === '{}', frac);

    // ---- admin calls of 1.6 Central System -> Charge Point actions -------------------
    cp.handle('GetConfiguration', ({ params }) => ({ configurationKey: params.key.map((key) => ({ key, readonly: false, value: '7' })), unknownKey: [] }));
    cp.handle('RemoteStartTransaction', () => ({ status: 'Accepted' }));
    cp.handle('ExtendedTriggerMessage', () => ({ status: 'Accepted' }));
    const gc = await peer.admin({ cmd: 'call', station: 'CP16', action: 'GetConfiguration', payload: { key: ['HeartbeatInterval'] } });
    check('1.6: admin call GetConfiguration', gc.ok === true && JSON.stringify(gc.response) ===
        '{"configurationKey":[{"key":"HeartbeatInterval","readonly":false,"value":"7"}],"unknownKey":[]}', gc);
    const rs = await peer.admin({ cmd: 'call', station: 'CP16', action: 'RemoteStartTransaction', payload: { idTag: 'T1', connectorId: 1 } });
    const et = await peer.admin({ cmd: 'call', station: 'CP16', action: 'ExtendedTriggerMessage', payload: { requestedMessage: 'SignChargePointCertificate' } });
    check('1.6: admin call RemoteStartTransaction, ExtendedTriggerMessage', rs.ok === true && et.ok === true && rs.response.status === 'Accepted', [rs, et]);
    const refused = await Promise.all([
        peer.admin({ cmd: 'call', station: 'CP16', action: 'Reset', payload: { type: 'Warm' } }),
        peer.admin({ cmd: 'call', station: 'CP16', action: 'GetVariables', payload: {} }),
        peer.admin({ cmd: 'call', station: 'CP16', action: 'StopTransaction', payload: {} }),
    ]);
    check('1.6: invalid request, 2.0.1 action and CP->CS action refused', refused.every((r) => r.ok === false) &&
        /1\.6 CSMS->CS/.test(refused[1].error), refused);
    cp.handle('ClearCache', ({ messageId }) => {
        cp.sendRaw(JSON.stringify([4, messageId, 'FormatViolation', '2.0.1 spelling', {}]));
        return NOREPLY;
    });
    const cc = await peer.admin({ cmd: 'call', station: 'CP16', action: 'ClearCache', payload: {}, timeout: 0.5 });
    const v201code = peer.records().find((r) => r.event === 'violation' && /errorCode 'FormatViolation'/.test(r.reason));
    check('1.6: a CALLERROR with a code 1.6 does not have -> violation', cc.ok === false && v201code, [cc, v201code]);
    const rawFrame = '[4,"raw16","OccurrenceConstraintViolation","sent verbatim",{}]';
    const raw = await peer.admin({ cmd: 'raw', station: 'CP16', frame: rawFrame });
    const rawOut = peer.records().find((r) => r.event === 'message' && r.dir === 'out' && r.id === 'raw16');
    check('1.6: admin raw frames are sent verbatim (no respelling)', raw.ok === true && rawOut && rawOut.raw === rawFrame, rawOut);
    check('1.6: no internal errors', !peer.records().some((r) => r.event === 'internal_error'));

    // Every 1.6 Central System -> Charge Point action: a minimal valid request is sent as it is
    // and the station's minimal valid answer comes back.
    const everyOk = [];
    for (const action of CS_TO_CP_16) {
        const answer = minimalInstance(SCHEMAS_16.find((x) => x.$id === `urn:${action}.conf`));
        cp.handle(action, () => answer);
        const payload = minimalInstance(SCHEMAS_16.find((x) => x.$id === `urn:${action}.req`));
        const r = await peer.admin({ cmd: 'call', station: 'CP16', action, payload, timeout: 5 });
        const out = peer.records().filter((x) => x.event === 'message' && x.dir === 'out' && x.type === 2 && x.action === action).pop();
        if (r.ok === true && JSON.stringify(r.response) === JSON.stringify(answer) && out && JSON.stringify(out.payload) === JSON.stringify(payload)) everyOk.push(action);
        else check(`1.6: admin call ${action}`, false, [r, out]);
    }
    check('1.6: admin call of every Central System -> Charge Point action', everyOk.length === 26, everyOk);

    // ---- --state: a restarted CSMS goes on numbering where it stopped ------------------
    await cp.close({ force: true });
    peer.proc.kill('SIGTERM');
    await peer.exited;
    const againDir = path.join(dir, 'v16-again');
    fs.mkdirSync(againDir);
    const again = new Peer(againDir, v16Args);
    peers.push(again);
    await again.ready();
    const cpa = station(again, 'CP16', { protocols: ['ocpp1.6'] });
    clients.push(cpa);
    await cpa.connect();
    const s3 = await cpa.call('StartTransaction', { connectorId: 1, idTag: 'T', meterStart: 0, timestamp: ts });
    const s4 = await cpa.call('StartTransaction', { connectorId: 1, idTag: 'T', meterStart: 0, timestamp: ts });
    const txa = await again.admin({ cmd: 'transactions' });
    check('1.6: --state survives a restart', s3.transactionId === 43 && txa.transactions.length === 4, [s3, txa.transactions.length]);
    const repeat = again.records().find((r) => r.event === 'warning' && /repeats transaction 43/.test(r.reason));
    check('1.6: a repeated StartTransaction gets a new id and a warning', s4.transactionId === 44 && repeat &&
        txa.transactions[3].duplicate_of === 43, [s4, repeat]);
}

async function main() {
    const started = Date.now();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'csms-js-selftest-'));
    const peer = new Peer(dir, ['--interval', '7', '--quiet']);
    const clients = [];
    let lenient = null;
    const extraPeers = [];
    try {
        await peer.ready();
        const listening = await waitFor('listening', () => peer.records().find((r) => r.event === 'listening'));
        check('listening record', listening && listening.port === peer.port && listening.admin_port === peer.adminPort &&
            listening.subprotocol === 'ocpp2.0.1' && listening.password_required === true &&
            listening.boot_status === 'Accepted' && listening.interval === 7 && listening.strict_datetime === true &&
            listening.pid === peer.proc.pid, listening);

        // ---- handshake failures ------------------------------------------------
        const wrong = station(peer, 'CP1', { password: 'wrong' });
        const wrongErr = await wrong.connect().then(() => null, (e) => e);
        check('wrong password -> HTTP 401', wrongErr && wrongErr.code === 401, wrongErr && wrongErr.message);
        const noProto = station(peer, 'CP1', { protocols: [], strictMode: false });
        const noProtoErr = await noProto.connect().then(() => null, (e) => e);
        check('missing subprotocol -> HTTP 400', noProtoErr && noProtoErr.code === 400, noProtoErr && noProtoErr.message);
        check('no station id -> HTTP 404', await rawUpgrade(peer.port, '/ocpp/', { 'Sec-WebSocket-Protocol': 'ocpp2.0.1' }) === 404);
        const basic = (s) => 'Basic ' + Buffer.from(s).toString('base64');
        check('auth user != station id -> HTTP 401', await rawUpgrade(peer.port, '/ocpp/CP9',
            { 'Sec-WebSocket-Protocol': 'ocpp2.0.1', Authorization: basic(`CP8:${PASSWORD}`) }) === 401);
        check('no Authorization header -> HTTP 401', await rawUpgrade(peer.port, '/ocpp/CP9',
            { 'Sec-WebSocket-Protocol': 'ocpp2.0.1' }) === 401);
        check('bad %-escape in path -> HTTP 400, no crash', await rawUpgrade(peer.port, '/ocpp/CP%E0%A4%A',
            { 'Sec-WebSocket-Protocol': 'ocpp2.0.1', Authorization: basic(`CP%E0%A4%A:${PASSWORD}`) }) === 400);
        const rejected = peer.records().filter((r) => r.event === 'rejected');
        const r401 = rejected.find((r) => r.http_status === 401 && r.station === 'CP1');
        check('rejected (401) logged', r401 && r401.auth_user === 'CP1' && /wrong password/.test(r401.reason) &&
            r401.path === '/ocpp/CP1' && Array.isArray(r401.subprotocols) && typeof r401.peer === 'string', r401);
        const r400 = rejected.find((r) => r.http_status === 400 && r.station === 'CP1');
        check('rejected (400, no subprotocol) logged', r400 && /subprotocol ocpp2\.0\.1 not offered/.test(r400.reason), r400);
        check('rejected (404) logged', rejected.some((r) => r.http_status === 404 && r.station === null));

        // ---- a station: boot, heartbeat, status ----------------------------------
        const cp = station(peer, 'CP1');
        clients.push(cp);
        const sent = [];
        cp.on('message', ({ message, outbound }) => { if (outbound) sent.push(message); });
        await cp.connect();
        const boot = await cp.call('BootNotification', bootPayload);
        check('BootNotification accepted', boot.status === 'Accepted' && boot.interval === 7 && ISO_Z_MS.test(boot.currentTime), boot);
        const hb = await cp.call('Heartbeat', {});
        check('Heartbeat answered', ISO_Z_MS.test(hb.currentTime), hb);
        const st = await cp.call('StatusNotification', { timestamp: ts, connectorStatus: 'Available', evseId: 1, connectorId: 1 });
        check('StatusNotification answered {}', JSON.stringify(st) === '{}', st);
        for (const [action, payload, expect] of [
            ['MeterValues', { evseId: 1, meterValue: [{ timestamp: ts, sampledValue: [{ value: 1.5 }] }] }, {}],
            ['NotifyEvent', { generatedAt: ts, seqNo: 0, eventData: [{ eventId: 1, timestamp: ts, trigger: 'Alerting', actualValue: 'x', eventNotificationType: 'HardWiredNotification', component: { name: 'C' }, variable: { name: 'V' } }] }, {}],
            ['SecurityEventNotification', { type: 'StartupOfTheDevice', timestamp: ts }, {}],
            ['DataTransfer', { vendorId: 'X' }, { status: 'UnknownVendorId' }],
            ['SignCertificate', { csr: 'abc' }, { status: 'Accepted' }],
            ['Get15118EVCertificate', { iso15118SchemaVersion: 'x', action: 'Install', exiRequest: 'e' }, { status: 'Failed', exiResponse: '' }],
        ]) {
            const res = await cp.call(action, payload);
            check(`${action} answered`, JSON.stringify(res) === JSON.stringify(expect), res);
        }

        const connected = peer.records().find((r) => r.event === 'connected' && r.station === 'CP1');
        check('connected logged', connected && connected.subprotocol === 'ocpp2.0.1' && connected.auth_user === 'CP1' &&
            connected.auth_ok === true && connected.path === '/ocpp/CP1' && typeof connected.peer === 'string' &&
            connected.password_required === true, connected);

        // ---- authorization settings --------------------------------------------
        const set = await peer.admin({ cmd: 'set', auth: { T1: 'Invalid', T2: { status: 'Accepted', group: 'G1' } }, auth_default: 'Blocked', id: 7 });
        check('admin set auth', set.ok === true && set.id === 7 && set.settings.auth.T2.group === 'G1', set);
        const badSet = await peer.admin({ cmd: 'set', boot_status: 'Maybe' });
        check('admin set rejects bad boot_status', badSet.ok === false && /boot_status must be one of/.test(badSet.error), badSet);
        const a1 = await cp.call('Authorize', { idToken: { idToken: 'T1', type: 'ISO14443' } });
        const a2 = await cp.call('Authorize', { idToken: { idToken: 'T2', type: 'ISO14443' } });
        const a3 = await cp.call('Authorize', { idToken: { idToken: 'T3', type: 'ISO14443' } });
        check('Authorize per-token status', a1.idTokenInfo.status === 'Invalid' && a2.idTokenInfo.status === 'Accepted' &&
            a2.idTokenInfo.groupIdToken.idToken === 'G1' && a2.idTokenInfo.groupIdToken.type === 'Central' &&
            a3.idTokenInfo.status === 'Blocked', [a1, a2, a3]);
        const txBase = { eventType: 'Started', timestamp: ts, triggerReason: 'Authorized', seqNo: 0, transactionInfo: { transactionId: 'tx1' } };
        const tx1 = await cp.call('TransactionEvent', { ...txBase, idToken: { idToken: 'T1', type: 'ISO14443' } });
        const tx2 = await cp.call('TransactionEvent', { ...txBase, seqNo: 1, eventType: 'Updated' });
        check('TransactionEvent idTokenInfo only with idToken', tx1.idTokenInfo.status === 'Invalid' && JSON.stringify(tx2) === '{}', [tx1, tx2]);

        // ---- invalid messages: CALLERROR (out, type 4) --------------------------
        const bad = [
            ['bad-required', [2, 'bad-required', 'StatusNotification', { timestamp: ts, connectorStatus: 'Available', evseId: 1 }], 'OccurrenceConstraintViolation'],
            ['bad-offset', [2, 'bad-offset', 'StatusNotification', { timestamp: '2025-01-01T12:00:00+01:00', connectorStatus: 'Available', evseId: 1, connectorId: 1 }], 'FormatViolation'],
            ['bad-notz', [2, 'bad-notz', 'StatusNotification', { timestamp: '2025-01-01T12:00:00', connectorStatus: 'Available', evseId: 1, connectorId: 1 }], 'FormatViolation'],
            ['bad-frac', [2, 'bad-frac', 'Heartbeat', {}], null], // placeholder replaced below
            ['bad-enum', [2, 'bad-enum', 'StatusNotification', { timestamp: ts, connectorStatus: 'Free', evseId: 1, connectorId: 1 }], 'FormatViolation'],
            ['bad-extra', [2, 'bad-extra', 'Heartbeat', { foo: 1 }], 'PropertyConstraintViolation'],
            ['bad-type', [2, 'bad-type', 'StatusNotification', { timestamp: ts, connectorStatus: 'Available', evseId: '1', connectorId: 1 }], 'TypeConstraintViolation'],
            ['bad-unknown', [2, 'bad-unknown', 'FooBar', {}], 'NotImplemented'],
            ['bad-direction', [2, 'bad-direction', 'Reset', { type: 'Immediate' }], 'NotSupported'],
        ];
        bad[3] = ['bad-frac', [2, 'bad-frac', 'SecurityEventNotification', { type: 'X', timestamp: '2025-01-01T12:00:00.1234Z' }], 'FormatViolation'];
        for (const [, frame] of bad) cp.sendRaw(JSON.stringify(frame));
        // Frames that are not valid OCPP-J at all.
        cp.sendRaw('[2,"bad-float",\'x\'');
        cp.sendRaw('[2,"bad-int","StatusNotification",{"timestamp":"2025-01-01T12:00:00Z","connectorStatus":"Available","evseId":1.0,"connectorId":1}]');
        cp.sendRaw('[2,"bad-dup","Heartbeat",{"customData":{"vendorId":"a"},"customData":{"vendorId":"b"}}]');
        cp.sendRaw('[2,"bad-len","Heartbeat"]');
        cp.sendRaw('[5,"bad-mtype","Heartbeat",{}]');
        const errOut = (id) => peer.records().find((r) => r.event === 'message' && r.dir === 'out' && r.type === 4 && r.id === id);
        await waitFor('CALLERRORs', () => errOut('bad-mtype') && errOut('bad-direction'));
        for (const [id, , code] of bad) {
            const r = errOut(id);
            check(`invalid ${id} -> CALLERROR ${code}`, r && r.error_code === code && typeof r.error_description === 'string' &&
                r.error_details !== undefined && r.payload === null && r.action !== undefined, r);
        }
        const notz = errOut('bad-notz');
        check('date-time error says why', notz && /date-time/.test(notz.error_description) && /'Z'|RFC 3339/.test(notz.error_description), notz);
        check('integer literal 1.0 -> TypeConstraintViolation', errOut('bad-int') && errOut('bad-int').error_code === 'TypeConstraintViolation', errOut('bad-int'));
        // Like csms.py: a frame with a duplicate key is not valid JSON, so its MessageId is unreadable ("-1").
        check('duplicate key -> violation', peer.records().some((r) => r.event === 'violation' && /duplicate object key 'customData'/.test(r.reason)));
        check('wrong element count -> RpcFrameworkError', errOut('bad-len') && errOut('bad-len').error_code === 'RpcFrameworkError');
        check('unknown MessageTypeId -> MessageTypeNotSupported', errOut('bad-mtype') && errOut('bad-mtype').error_code === 'MessageTypeNotSupported');
        const minus1 = peer.records().filter((r) => r.event === 'message' && r.dir === 'out' && r.type === 4 && r.id === '-1');
        check('non-JSON and duplicate key -> CALLERROR with id -1', minus1.length === 2 && minus1.every((r) => r.error_code === 'RpcFrameworkError'), minus1);
        const violations = peer.records().filter((r) => r.event === 'violation');
        check('framing errors logged as violation', violations.length === 4 && violations.every((v) => v.station === 'CP1' && typeof v.reason === 'string' && typeof v.raw === 'string'), violations);
        const inBad = peer.records().find((r) => r.event === 'message' && r.dir === 'in' && r.id === 'bad-int');
        check('raw frame captured exactly', inBad && inBad.raw.includes('"evseId":1.0') && inBad.payload.evseId === 1, inBad);

        // The valid CALLs got no CALLERROR.
        const validIds = new Set(sent.map((m) => { try { return JSON.parse(m); } catch (e) { return []; } }).filter((m) => m[0] === 2 && !String(m[1]).startsWith('bad-')).map((m) => m[1]));
        const errsForValid = peer.records().filter((r) => r.event === 'message' && r.dir === 'out' && r.type === 4 && validIds.has(r.id));
        check('no CALLERROR for valid CALLs', validIds.size >= 14 && errsForValid.length === 0, errsForValid);

        // ---- admin calls answered by the fake station -----------------------------
        const gvResult = { getVariableResult: [{ attributeStatus: 'Accepted', component: { name: 'OCPPCommCtrlr' }, variable: { name: 'HeartbeatInterval' }, attributeValue: '7' }] };
        cp.handle('GetVariables', () => gvResult);
        const gv = await peer.admin({ cmd: 'call', station: 'CP1', action: 'GetVariables', payload: { getVariableData: [{ component: { name: 'OCPPCommCtrlr' }, variable: { name: 'HeartbeatInterval' } }] } });
        check('admin call ok', gv.ok === true && JSON.stringify(gv.response) === JSON.stringify(gvResult), gv);
        const outCall = peer.records().find((r) => r.event === 'message' && r.dir === 'out' && r.type === 2 && r.action === 'GetVariables');
        const inRes = outCall && peer.records().find((r) => r.event === 'message' && r.dir === 'in' && r.type === 3 && r.id === outCall.id);
        check('admin CALL and its result logged', outCall && inRes && inRes.action === 'GetVariables' && outCall.id.length === 36, [outCall, inRes]);

        const callsBefore = peer.records().filter((r) => r.event === 'message' && r.dir === 'out' && r.type === 2).length;
        const invalidReq = await peer.admin({ cmd: 'call', station: 'CP1', action: 'Reset', payload: { type: 'Later' } });
        const callsAfter = peer.records().filter((r) => r.event === 'message' && r.dir === 'out' && r.type === 2).length;
        check('invalid admin request rejected, never sent', invalidReq.ok === false && /request rejected by schema validation: FormatViolation/.test(invalidReq.error) && callsAfter === callsBefore, invalidReq);
        const badAction = await peer.admin({ cmd: 'call', station: 'CP1', action: 'Heartbeat', payload: {} });
        check('admin call of a CS->CSMS action refused', badAction.ok === false && /CSMS->CS action/.test(badAction.error), badAction);

        cp.handle('Reset', ({ messageId }) => {
            cp.sendRaw(JSON.stringify([3, messageId, { status: 'Bogus' }]));
            return NOREPLY;
        });
        const invalidRes = await peer.admin({ cmd: 'call', station: 'CP1', action: 'Reset', payload: { type: 'Immediate' } });
        check('invalid CALLRESULT -> ok:false invalid_response', invalidRes.ok === false && /failed schema validation/.test(invalidRes.error) &&
            invalidRes.invalid_response && invalidRes.invalid_response.status === 'Bogus', invalidRes);
        const resViolation = peer.records().filter((r) => r.event === 'violation').pop();
        check('invalid CALLRESULT logged as violation', resViolation && resViolation.action === 'Reset' && /CALLRESULT to Reset/.test(resViolation.reason), resViolation);

        cp.handle('TriggerMessage', () => { throw createRPCError('NotSupported', 'not here'); });
        const ce = await peer.admin({ cmd: 'call', station: 'CP1', action: 'TriggerMessage', payload: { requestedMessage: 'Heartbeat' } });
        check('CALLERROR answer -> error_code', ce.ok === false && ce.error_code === 'NotSupported' && ce.error === 'CALLERROR NotSupported: not here' &&
            ce.error_description === 'not here' && typeof ce.error_details === 'object', ce);

        let lateId = null;
        cp.handle('ClearCache', ({ messageId }) => { lateId = messageId; return NOREPLY; });
        const to = await peer.admin({ cmd: 'call', station: 'CP1', action: 'ClearCache', payload: {}, timeout: 0.3 });
        check('admin call timeout', to.ok === false && to.error === 'timeout: no response to ClearCache within 0.3s', to);
        cp.sendRaw(JSON.stringify([3, lateId, { status: 'Accepted' }]));
        await waitFor('late-response warning', () => peer.records().some((r) => r.event === 'warning' && /late response to ClearCache/.test(r.reason)));
        check('late response -> warning', true);
        cp.sendRaw(JSON.stringify([3, 'nobody-asked', {}]));
        await waitFor('unknown-id violation', () => peer.records().some((r) => r.event === 'violation' && r.id === 'nobody-asked'));
        check('response to unknown MessageId -> violation', true);

        cp.handle('ClearDisplayMessage', () => ({ status: 'Unknown' }));
        const raw = await peer.admin({ cmd: 'raw', station: 'CP1', frame: '[2,"raw-1","ClearDisplayMessage",{"id":1}]', timeout: 5 });
        check('admin raw CALL', raw.ok === true && JSON.stringify(raw.response) === '[3,"raw-1",{"status":"Unknown"}]', raw);
        const rawOut = peer.records().find((r) => r.event === 'message' && r.dir === 'out' && r.id === 'raw-1');
        check('raw frame logged verbatim', rawOut && rawOut.raw === '[2,"raw-1","ClearDisplayMessage",{"id":1}]', rawOut);

        const stations = await peer.admin({ cmd: 'stations' });
        check('admin stations', stations.ok === true && JSON.stringify(stations.stations) === '["CP1"]', stations);
        const wc = await peer.admin({ cmd: 'wait_connected', station: 'CP1', timeout: 1 });
        const wcx = await peer.admin({ cmd: 'wait_connected', station: 'CPX', timeout: 0.2 });
        check('admin wait_connected', wc.ok === true && wcx.ok === false, [wc, wcx]);
        const unknownCmd = await peer.admin({ cmd: 'nope' });
        check('admin unknown cmd', unknownCmd.ok === false && unknownCmd.error === "unknown cmd 'nope'", unknownCmd);
        const notConnected = await peer.admin({ cmd: 'call', station: 'CPX', action: 'Reset', payload: { type: 'Immediate' } });
        check('admin call to absent station', notConnected.ok === false && /not connected/.test(notConnected.error), notConnected);

        // ---- Pending boot -> warning on other CALLs --------------------------------
        await peer.admin({ cmd: 'set', boot_status: 'Pending', interval: 3 });
        const pb = await cp.call('BootNotification', bootPayload);
        await cp.call('Heartbeat', {});
        check('boot Pending', pb.status === 'Pending' && pb.interval === 3, pb);
        check('CALL while Pending -> warning', peer.records().some((r) => r.event === 'warning' && /Heartbeat sent while the last BootNotification was answered Pending/.test(r.reason)));
        await peer.admin({ cmd: 'set', boot_status: 'Accepted' });

        // ---- log format -----------------------------------------------------------
        const recs = peer.records();
        check('every line has t and event', recs.every((r) => LOG_T.test(r.t) && typeof r.event === 'string'));
        const msgs = recs.filter((r) => r.event === 'message');
        check('message lines have station/dir/type/id/action/payload/raw', msgs.length > 20 &&
            msgs.every((r) => ['station', 'dir', 'type', 'id', 'action', 'payload', 'raw'].every((k) => k in r)));
        const bootIn = msgs.find((r) => r.dir === 'in' && r.type === 2 && r.action === 'BootNotification');
        const bootOut = bootIn && msgs.find((r) => r.dir === 'out' && r.type === 3 && r.id === bootIn.id);
        check('BootNotification in/out lines', bootIn && sent.includes(bootIn.raw) && bootOut && bootOut.action === 'BootNotification' &&
            bootOut.payload.status === 'Accepted', [bootIn, bootOut]);
        check('admin lines logged', recs.some((r) => r.event === 'admin' && r.request && r.request.cmd === 'call' && r.ok === true));

        // ---- disconnect from the CSMS side ---------------------------------------
        const closed = new Promise((r) => cp.once('close', r));
        const dc = await peer.admin({ cmd: 'disconnect', station: 'CP1', code: 4000, reason: 'bye' });
        const closeEv = await closed;
        check('admin disconnect', dc.ok === true && closeEv.code === 4000, [dc, closeEv]);
        const disc = await waitFor('disconnected', () => peer.records().find((r) => r.event === 'disconnected' && r.station === 'CP1'));
        check('disconnected logged', disc.code === 4000 && disc.reason === 'bye' && disc.initiator === 'csms', disc);

        // ---- station-side close, then SIGTERM with a station connected -----------
        const cp2 = station(peer, 'CP 2/x'); // percent-encoded by RPCClient
        clients.push(cp2);
        await cp2.connect();
        // (The CSMS logs `connected` right after sending the 101; the station may see the 101 first.)
        const c2 = await waitFor('CP 2/x connected', () => peer.records().find((r) => r.event === 'connected' && r.station === 'CP 2/x'));
        check('percent-encoded station id decoded', c2 && c2.path === '/ocpp/CP%202%2Fx', c2);
        await cp2.close({ code: 1000, reason: 'station leaving' });
        const d2 = await waitFor('CP2 disconnected', () => peer.records().find((r) => r.event === 'disconnected' && r.station === 'CP 2/x'));
        check('station-initiated close logged', d2.code === 1000 && d2.initiator === 'station', d2);

        const cp3 = station(peer, 'CP3');
        clients.push(cp3);
        await cp3.connect();
        const closed3 = new Promise((r) => cp3.once('close', r));
        peer.proc.kill('SIGTERM');
        const exit = await peer.exited;
        const close3 = await closed3;
        check('SIGTERM -> exit 0', exit.code === 0, exit);
        check('stations closed with 1001 on shutdown', close3.code === 1001, close3);
        const last = peer.records().pop();
        check('stopped is the last line', last && last.event === 'stopped', last);
        const d3 = peer.records().find((r) => r.event === 'disconnected' && r.station === 'CP3');
        check('shutdown disconnect logged', d3 && d3.code === 1001 && d3.initiator === 'csms', d3);
        check('no internal errors', !peer.records().some((r) => r.event === 'internal_error'), peer.records().filter((r) => r.event === 'internal_error'));
        check('--quiet: nothing on stderr', peer.stderr === '', peer.stderr);

        // ---- --lenient-datetime: offsets and more digits pass, a missing offset does not
        const lenDir = path.join(dir, 'lenient');
        fs.mkdirSync(lenDir);
        lenient = new Peer(lenDir, ['--lenient-datetime', '--quiet']);
        await lenient.ready();
        const cpl = station(lenient, 'CPL', { strictMode: false });
        clients.push(cpl);
        await cpl.connect();
        const offsetOk = await cpl.call('StatusNotification', { timestamp: '2025-01-01T12:00:00.123456+01:00', connectorStatus: 'Available', evseId: 1, connectorId: 1 });
        const noOffset = await cpl.call('StatusNotification', { timestamp: '2025-01-01T12:00:00', connectorStatus: 'Available', evseId: 1, connectorId: 1 }).then(() => null, (e) => e);
        check('--lenient-datetime accepts offsets and 6 digits', JSON.stringify(offsetOk) === '{}', offsetOk);
        check('--lenient-datetime still rejects a missing offset', noOffset && noOffset.rpcErrorCode === 'FormatViolation', noOffset && noOffset.message);
        const lenListening = lenient.records().find((r) => r.event === 'listening');
        check('listening strict_datetime false', lenListening && lenListening.strict_datetime === false, lenListening);

        await v16Scenario(dir, clients, extraPeers);
    } catch (e) {
        check(`unexpected exception: ${e && e.stack}`, false);
    } finally {
        for (const c of clients) c.close({ force: true }).catch(() => {});
        for (const p of [peer, lenient, ...extraPeers]) {
            if (p && p.proc.exitCode === null && p.proc.signalCode === null) p.proc.kill('SIGKILL');
        }
        if (failed) {
            console.log(`--- csms stderr ---\n${peer.stderr}\n--- log: ${peer.log} (kept) ---`);
        } else {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    }
    console.log(`selftest.js: ${((Date.now() - started) / 1000).toFixed(1)} s`);
    console.log(`${passed} passed, ${failed} failed`);
    return failed ? 1 : 0;
}

main().then((code) => process.exit(code));
