#!/usr/bin/env node
'use strict';
/*
 * Scriptable OCPP 2.0.1 (or, with --ocpp 1.6, OCPP 1.6J) CSMS for end-to-end tests:
 * the second independent test peer of ocpp-agent, built on the npm package `ocpp-rpc`
 * in strict mode (every message is validated against the official OCPP 2.0.1 / 1.6 JSON
 * schemas with Ajv + ajv-formats). Same command line, JSON-lines log format and admin protocol as
 * tests/csms/csms.py; see tests/csms-js/README.md for the differences.
 *
 * Install with scripts/setup-node.sh, then: node tests/csms-js/csms.js --help
 */

const fs = require('fs');
const net = require('net');
const http = require('http');
const path = require('path');
const crypto = require('crypto');
const { performance } = require('perf_hooks');

let RPCServer, createRPCError, createValidator, RPCError, TimeoutError, NOREPLY, OCPP_RPC_VERSION, SCHEMAS_201, SCHEMAS_16;
try {
    ({ RPCServer, createRPCError, createValidator, RPCError, TimeoutError, NOREPLY } = require('ocpp-rpc'));
    OCPP_RPC_VERSION = require('ocpp-rpc/package.json').version;
    SCHEMAS_201 = require('ocpp-rpc/lib/schemas/ocpp2_0_1.json');
    SCHEMAS_16 = require('ocpp-rpc/lib/schemas/ocpp1_6.json');
} catch (e) {
    process.stderr.write(`csms.js: error: cannot load the npm package ocpp-rpc (${e.message}); ` +
        'run scripts/setup-node.sh first\n');
    process.exit(1);
}

const MAX_MESSAGE_ID_LEN = 36;

// OCPP 2.0.1 actions initiated by the Charging Station (everything else, plus
// DataTransfer which goes both ways, is initiated by the CSMS).
const CS_TO_CSMS_201 = new Set(`Authorize BootNotification ClearedChargingLimit DataTransfer
    FirmwareStatusNotification Get15118EVCertificate GetCertificateStatus Heartbeat
    LogStatusNotification MeterValues NotifyChargingLimit NotifyCustomerInformation
    NotifyDisplayMessages NotifyEVChargingNeeds NotifyEVChargingSchedule NotifyEvent
    NotifyMonitoringReport NotifyReport PublishFirmwareStatusNotification
    ReportChargingProfiles ReservationStatusUpdate SecurityEventNotification
    SignCertificate StatusNotification TransactionEvent`.split(/\s+/));
// OCPP 1.6 actions initiated by the Charge Point: Core, Firmware Management and the
// security whitepaper (edition 3); DataTransfer goes both ways.
const CS_TO_CSMS_16 = new Set(`Authorize BootNotification DataTransfer DiagnosticsStatusNotification
    FirmwareStatusNotification Heartbeat LogStatusNotification MeterValues
    SecurityEventNotification SignCertificate SignedFirmwareStatusNotification
    StartTransaction StatusNotification StopTransaction`.split(/\s+/));

// RPC framework error codes of OCPP-J 2.0.1 (Part 4, CallError).
const OCPP201_ERROR_CODES = new Set(`FormatViolation GenericError InternalError MessageTypeNotSupported
    NotImplemented NotSupported OccurrenceConstraintViolation PropertyConstraintViolation ProtocolError
    RpcFrameworkError SecurityError TypeConstraintViolation`.split(/\s+/));
// OCPP-J 1.6 section 4.2.3, as printed: the errata sheet (section 5, "known issues that
// will not be fixed") keeps the spellings FormationViolation and OccurenceConstraintViolation.
const OCPP16_ERROR_CODES = new Set(`NotImplemented NotSupported InternalError ProtocolError SecurityError
    FormationViolation PropertyConstraintViolation OccurenceConstraintViolation TypeConstraintViolation
    GenericError`.split(/\s+/));

/** What differs between the OCPP versions this CSMS speaks (chosen with --ocpp). */
class Protocol {
    constructor({ version, subprotocol, schemas, csToCsms, errorCodes, spelling, maxFractionDigits, groupMaxLen, statuses }) {
        Object.assign(this, { version, subprotocol, schemas, csToCsms, errorCodes, spelling, maxFractionDigits, groupMaxLen });
        this.schemaById = new Map(schemas.map((s) => [s.$id, s]));
        this.allActions = new Set(schemas.map((s) => s.$id.replace(/^urn:/, '').replace(/\.(req|conf)$/, '')));
        this.csmsToCs = new Set([...this.allActions].filter((a) => !csToCsms.has(a)).concat(['DataTransfer']));
        const [registration, authorization] = statuses(this.schemaById);
        this.registrationStatuses = registration.slice();
        this.authorizationStatuses = authorization.slice();
    }

    /** An error code as this version spells it. */
    errorCode(code) {
        return Object.prototype.hasOwnProperty.call(this.spelling, code) ? this.spelling[code] : code;
    }
}

const PROTOCOLS = {
    '2.0.1': new Protocol({
        version: '2.0.1', subprotocol: 'ocpp2.0.1', schemas: SCHEMAS_201, csToCsms: CS_TO_CSMS_201,
        errorCodes: OCPP201_ERROR_CODES,
        // ocpp-rpc uses OCPP 1.6's misspelling for every OCPP version.
        spelling: { OccurenceConstraintViolation: 'OccurrenceConstraintViolation' },
        maxFractionDigits: 3, groupMaxLen: 36,
        statuses: (byId) => [byId.get('urn:BootNotification.conf').definitions.RegistrationStatusEnumType.enum,
            byId.get('urn:Authorize.conf').definitions.AuthorizationStatusEnumType.enum],
    }),
    '1.6': new Protocol({
        version: '1.6', subprotocol: 'ocpp1.6', schemas: SCHEMAS_16, csToCsms: CS_TO_CSMS_16,
        errorCodes: OCPP16_ERROR_CODES,
        // 1.6 spells these as printed; ocpp-rpc "corrects" OccurenceConstraintViolation for
        // ocpp1.6, which the errata says not to do. 1.6 has no RpcFrameworkError /
        // MessageTypeNotSupported: a frame that is not a well-formed message "does not
        // conform to the PDU structure" (FormationViolation).
        spelling: {
            FormatViolation: 'FormationViolation', OccurrenceConstraintViolation: 'OccurenceConstraintViolation',
            RpcFrameworkError: 'FormationViolation', MessageTypeNotSupported: 'FormationViolation',
        },
        maxFractionDigits: null, groupMaxLen: 20,
        statuses: (byId) => [byId.get('urn:BootNotification.conf').properties.status.enum,
            byId.get('urn:Authorize.conf').properties.idTagInfo.properties.status.enum],
    }),
};
let PROTO = PROTOCOLS['2.0.1']; // set from --ocpp
const REGISTRATION_STATUSES = PROTOCOLS['2.0.1'].registrationStatuses; // the same in 1.6

// --------------------------------------------------------------------------
// Small helpers
// --------------------------------------------------------------------------

const compact = (obj) => JSON.stringify(obj === undefined ? null : obj);
const cpLen = (s) => [...s].length; // length in code points, like Python's len()
const truncate = (s, n) => (cpLen(s) <= n ? s : [...s].slice(0, n).join(''));

/** Python-style repr of a JSON value, for error texts that match csms.py's. */
function pyRepr(v) {
    if (v === undefined || v === null) return 'None';
    if (v === true) return 'True';
    if (v === false) return 'False';
    if (typeof v === 'string') return `'${v.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
    if (Array.isArray(v)) return `[${v.map(pyRepr).join(', ')}]`;
    if (typeof v === 'object') return `{${Object.entries(v).map(([k, x]) => `${pyRepr(k)}: ${pyRepr(x)}`).join(', ')}}`;
    return String(v);
}

/** Seconds as Python prints a float (30 -> "30.0"). */
const pySeconds = (t) => (Number.isInteger(t) ? t.toFixed(1) : String(t));

function shortJson(obj, limit = 600) {
    const text = compact(obj);
    return cpLen(text) <= limit ? text : truncate(text, limit) + '\u2026';
}

/** Current UTC time as RFC 3339 with milliseconds and 'Z' (OCPP style). */
const utcNowIso = () => new Date().toISOString();

/** Log timestamp with microseconds: 2025-01-01T12:00:00.123456Z. */
function logTimestamp() {
    const t = performance.timeOrigin + performance.now(); // ms, sub-ms resolution
    const ms = Math.floor(t);
    const micros = Math.min(999, Math.floor((t - ms) * 1000));
    return new Date(ms).toISOString().slice(0, 23) + String(micros).padStart(3, '0') + 'Z';
}

function writeAtomic(file, text) {
    const dir = path.dirname(path.resolve(file));
    const tmp = path.join(dir, `.${path.basename(file)}.tmp${process.pid}`);
    const fd = fs.openSync(tmp, 'w');
    try {
        fs.writeSync(fd, text);
        fs.fsyncSync(fd);
    } finally {
        fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
}

/** Python's urllib.parse.unquote: %XX runs decoded as UTF-8 (errors replaced), bad escapes kept. */
function unquote(s) {
    if (!s.includes('%')) return s;
    return s.replace(/(?:%[0-9A-Fa-f]{2})+/g, (m) => Buffer.from(m.replace(/%/g, ''), 'hex').toString('utf8'));
}

/** Station id = last path segment, percent-decoded (query string ignored); null if empty. */
function parseStationPath(p) {
    p = p.split('?', 1)[0].split('#', 1)[0];
    const last = p.slice(p.lastIndexOf('/') + 1);
    const station = unquote(last);
    return station || null;
}

const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true });

/** Returns [user, password, error] like csms.py's parse_basic_auth. */
function parseBasicAuth(header) {
    if (header === undefined || header === null) return [null, null, 'missing Authorization header'];
    const trimmed = header.trim();
    const sp = trimmed.indexOf(' ');
    const scheme = sp < 0 ? trimmed : trimmed.slice(0, sp);
    const token = sp < 0 ? '' : trimmed.slice(sp + 1).trim();
    if (scheme.toLowerCase() !== 'basic') return [null, null, `unsupported Authorization scheme ${pyRepr(scheme)}`];
    let decoded;
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(token) || token.length % 4 !== 0) {
        return [null, null, 'malformed Basic credentials'];
    }
    try {
        decoded = STRICT_UTF8.decode(Buffer.from(token, 'base64'));
    } catch (e) {
        return [null, null, 'malformed Basic credentials'];
    }
    const colon = decoded.indexOf(':');
    if (colon < 0) return [decoded, null, "malformed Basic credentials (no ':')"];
    return [decoded.slice(0, colon), decoded.slice(colon + 1), null];
}

function offeredSubprotocols(req) {
    const offered = [];
    // Node joins repeated headers with ", ".
    const value = req.headers['sec-websocket-protocol'];
    if (typeof value === 'string') {
        for (const p of value.split(',')) if (p.trim()) offered.push(p.trim());
    }
    return offered;
}

function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Waits for `promise`, a timeout or `closed` (whichever first).
 * Returns {status: 'ok', value} | {status: 'error', error} | {status: 'timeout'} | {status: 'closed'}.
 */
function raceOutcome(promise, ms, closed) {
    return new Promise((resolve) => {
        let timer = null;
        const done = (r) => {
            if (timer) clearTimeout(timer);
            resolve(r);
        };
        if (ms !== null) timer = setTimeout(() => done({ status: 'timeout' }), Math.max(0, ms));
        promise.then((value) => done({ status: 'ok', value }), (error) => done({ status: 'error', error }));
        if (closed) closed.then(() => done({ status: 'closed' }));
    });
}

// --------------------------------------------------------------------------
// Strict validation (ocpp-rpc strict mode + csms.py's extra rules)
// --------------------------------------------------------------------------

let STRICT_DATETIME = true; // toggled by --lenient-datetime

const DATETIME_RE = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-](\d{2}):(\d{2}))$/;

/** csms.py's date-time rule. Returns null if valid, else the reason. */
function checkDatetime(value, strict = STRICT_DATETIME) {
    if (typeof value !== 'string') return null;
    const m = DATETIME_RE.exec(value);
    if (!m) return `${pyRepr(value)} is not an RFC 3339 date-time (YYYY-MM-DDThh:mm:ss[.fff]Z)`;
    const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number);
    const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
    const dim = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1];
    if (year < 1 || month < 1 || month > 12 || day < 1 || day > dim || hour > 23 || minute > 59) {
        return `${pyRepr(value)} is not a valid date-time`;
    }
    if (second > 60) return `${pyRepr(value)}: seconds out of range`;
    if (m[9] !== undefined && (Number(m[9]) > 23 || Number(m[10]) > 59)) return `${pyRepr(value)}: invalid UTC offset`;
    if (strict) {
        const limit = PROTO.maxFractionDigits;
        if (m[7] !== undefined && limit !== null && m[7].length - 1 > limit) {
            return `${pyRepr(value)}: more than ${limit} fractional second digits (OCPP 2.0.1 limit)`;
        }
        if (m[8] !== 'Z') return `${pyRepr(value)}: not UTC with 'Z' designator`;
    }
    return null;
}

/**
 * Context of the inbound frame ocpp-rpc is processing right now (set around the
 * synchronous call into its message handler): which schema its payload will be
 * validated against and where the frame had number literals with a fraction or
 * exponent (JSON.parse turns `1.0` into 1, which Ajv then accepts as an integer).
 */
let currentInbound = null;

function derefSchema(root, node) {
    for (let i = 0; node && typeof node.$ref === 'string' && i < 32; i++) {
        const m = /^#\/definitions\/(.+)$/.exec(node.$ref);
        node = m ? root.definitions && root.definitions[m[1]] : null;
    }
    return node;
}

function schemaAt(root, pathParts) {
    let node = derefSchema(root, root);
    for (const part of pathParts) {
        if (!node) return null;
        if (typeof part === 'number') node = node.items;
        else node = node.properties && Object.prototype.hasOwnProperty.call(node.properties, part) ? node.properties[part] : null;
        node = derefSchema(root, node);
    }
    return node;
}

const jsonPointer = (parts) => parts.map((p) => '/' + String(p).replace(/~/g, '~0').replace(/\//g, '~1')).join('');

/** A validator for ocpp-rpc's `strictModeValidators` (replaces the stock one of the subprotocol). */
class StrictValidator {
    constructor() {
        this._inner = createValidator(PROTO.subprotocol, PROTO.schemas);
        const ajv = this._inner._ajv;
        const stock = ajv && ajv.formats && ajv.formats['date-time'];
        if (!stock || typeof stock.validate !== 'function') {
            throw new Error('ocpp-rpc internals changed: cannot find the Ajv date-time format');
        }
        // Keep ajv-formats' check and add csms.py's (schemas compile lazily, so this
        // applies to every validation).
        ajv.addFormat('date-time', {
            type: 'string',
            validate: (s) => stock.validate(s) && checkDatetime(s) === null,
            compare: stock.compare,
        });
        this.subprotocol = PROTO.subprotocol;
    }

    validate(schemaId, params) {
        try {
            this._inner.validate(schemaId, params);
        } catch (err) {
            throw this._fixError(err, params);
        }
        const ctx = currentInbound;
        if (ctx && ctx.schemaId === schemaId && ctx.floatPaths.length) {
            const root = PROTO.schemaById.get(schemaId);
            for (const p of ctx.floatPaths) {
                const node = schemaAt(root, p);
                const t = node && node.type;
                if (t === 'integer' || (Array.isArray(t) && t.includes('integer') && !t.includes('number'))) {
                    const where = 'data' + jsonPointer(p);
                    throw createRPCError('TypeConstraintViolation',
                        `${where} must be integer (a number literal with a fraction or exponent is not an integer)`,
                        { errors: [{ instancePath: jsonPointer(p), keyword: 'type', params: { type: 'integer' } }], data: params });
                }
            }
        }
        return true;
    }

    _fixError(err, params) {
        if (!(err instanceof RPCError)) return err;
        const code = PROTO.errorCode(err.rpcErrorCode);
        let message = err.message || err.rpcErrorMessage || '';
        const first = err.details && Array.isArray(err.details.errors) ? err.details.errors[0] : null;
        if (first && first.keyword === 'format' && first.params && first.params.format === 'date-time') {
            let value = params;
            for (const part of String(first.instancePath || '').split('/').slice(1)) {
                const key = part.replace(/~1/g, '/').replace(/~0/g, '~');
                value = value === null || value === undefined ? undefined : value[key];
            }
            const reason = checkDatetime(value) || `${pyRepr(value)} is not a date-time (ajv-formats)`;
            message = `${message}: ${reason}`;
        }
        message = truncate(message, 255);
        if (code === err.rpcErrorCode && message === err.message) return err;
        return createRPCError(code, message, err.details);
    }
}

// --------------------------------------------------------------------------
// Frame checks (what ocpp-rpc does not check itself)
// --------------------------------------------------------------------------

class FrameError extends Error {
    constructor(code, description, msgId, answer) {
        super(description);
        this.code = code;
        this.description = description;
        this.msgId = msgId;
        this.answer = answer; // true: answer with a CALLERROR (it was, or may be, a CALL)
    }
}

class DuplicateKey extends Error {}

/**
 * Scans JSON text that JSON.parse accepted: throws DuplicateKey on a repeated
 * object key; returns the paths of number literals with a fraction or exponent.
 */
function scanJson(text) {
    let i = 0;
    const n = text.length;
    const floatPaths = [];
    const stack = [];
    const skipWs = () => {
        while (i < n) {
            const c = text.charCodeAt(i);
            if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) i++;
            else break;
        }
    };
    const str = () => {
        const start = i++;
        while (i < n) {
            const c = text.charCodeAt(i);
            if (c === 0x22) {
                i++;
                return JSON.parse(text.slice(start, i));
            }
            i += c === 0x5c ? 2 : 1;
        }
        throw new Error('unterminated string');
    };
    const value = () => {
        skipWs();
        const c = text[i];
        if (c === '{') {
            i++;
            const keys = new Set();
            skipWs();
            if (text[i] === '}') {
                i++;
                return;
            }
            for (;;) {
                skipWs();
                const k = str();
                if (keys.has(k)) throw new DuplicateKey(`duplicate object key ${pyRepr(k)}`);
                keys.add(k);
                skipWs();
                i++; // ':'
                stack.push(k);
                value();
                stack.pop();
                skipWs();
                if (text[i++] === ',') continue;
                return; // '}'
            }
        }
        if (c === '[') {
            i++;
            skipWs();
            if (text[i] === ']') {
                i++;
                return;
            }
            for (let idx = 0; ; idx++) {
                stack.push(idx);
                value();
                stack.pop();
                skipWs();
                if (text[i++] === ',') continue;
                return; // ']'
            }
        }
        if (c === '"') {
            str();
            return;
        }
        if (c === 't' || c === 'n') {
            i += 4;
            return;
        }
        if (c === 'f') {
            i += 5;
            return;
        }
        const start = i;
        while (i < n && /[-+0-9.eE]/.test(text[i])) i++;
        if (/[.eE]/.test(text.slice(start, i))) floatPaths.push(stack.slice());
    };
    value();
    return floatPaths;
}

/** Parse and structurally check one OCPP-J frame; throws FrameError if bad. Returns [msg, floatPaths]. */
function checkFrame(text, isBinary) {
    if (isBinary) {
        let msgId = '-1';
        let answer = true;
        try {
            const msg = JSON.parse(text);
            if (Array.isArray(msg) && msg.length > 1 && typeof msg[1] === 'string') {
                msgId = msg[1];
                answer = msg[0] !== 3 && msg[0] !== 4;
            }
        } catch (e) { /* not JSON either */ }
        throw new FrameError('RpcFrameworkError', 'binary WebSocket frame; OCPP-J uses text frames', msgId, answer);
    }
    let msg;
    let floatPaths;
    try {
        msg = JSON.parse(text);
        floatPaths = scanJson(text);
    } catch (e) {
        const why = e instanceof RangeError ? 'nesting too deep' : e.message;
        throw new FrameError('RpcFrameworkError', `frame is not valid JSON: ${why}`, '-1', true);
    }
    if (!Array.isArray(msg) || msg.length === 0) {
        throw new FrameError('RpcFrameworkError', 'frame is not a non-empty JSON array', '-1', true);
    }
    const mtype = msg[0];
    const msgId = msg.length > 1 && typeof msg[1] === 'string' ? msg[1] : '-1';
    const isFloat = (idx) => floatPaths.some((p) => p.length === 1 && p[0] === idx);
    if (typeof mtype !== 'number' || !Number.isInteger(mtype) || isFloat(0)) {
        throw new FrameError('RpcFrameworkError', 'MessageTypeId is not an integer', msgId, true);
    }
    if (mtype !== 2 && mtype !== 3 && mtype !== 4) {
        throw new FrameError('MessageTypeNotSupported', `MessageTypeId ${mtype} is not supported`, msgId, true);
    }
    const answer = mtype === 2;
    const expectedLen = { 2: 4, 3: 3, 4: 5 }[mtype];
    if (msg.length !== expectedLen) {
        throw new FrameError('RpcFrameworkError',
            `message type ${mtype} must have ${expectedLen} elements, got ${msg.length}`, msgId, answer);
    }
    if (typeof msg[1] !== 'string') throw new FrameError('RpcFrameworkError', 'MessageId is not a string', '-1', answer);
    if (cpLen(msg[1]) > MAX_MESSAGE_ID_LEN) {
        throw new FrameError('RpcFrameworkError', `MessageId longer than ${MAX_MESSAGE_ID_LEN} characters`, msg[1], answer);
    }
    const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
    if (mtype === 2) {
        if (typeof msg[2] !== 'string') throw new FrameError('RpcFrameworkError', 'Action is not a string', msgId, true);
        if (!isObject(msg[3])) throw new FrameError('FormatViolation', 'payload is not a JSON object', msgId, true);
    } else if (mtype === 3) {
        if (!isObject(msg[2])) throw new FrameError('FormatViolation', 'CALLRESULT payload is not a JSON object', msgId, false);
    } else {
        if (typeof msg[2] !== 'string' || !PROTO.errorCodes.has(msg[2])) {
            throw new FrameError('RpcFrameworkError', `CALLERROR has invalid errorCode ${pyRepr(msg[2])}`, msgId, false);
        }
        if (typeof msg[3] !== 'string') throw new FrameError('RpcFrameworkError', 'CALLERROR errorDescription is not a string', msgId, false);
        if (cpLen(msg[3]) > 255) throw new FrameError('RpcFrameworkError', 'CALLERROR errorDescription longer than 255', msgId, false);
        if (!isObject(msg[4])) throw new FrameError('RpcFrameworkError', 'CALLERROR errorDetails is not a JSON object', msgId, false);
    }
    return [msg, floatPaths];
}

// --------------------------------------------------------------------------
// Settings and event sink
// --------------------------------------------------------------------------

class Settings {
    constructor(bootStatus, interval) {
        this.bootStatus = bootStatus;
        this.interval = interval;
        this.authDefault = 'Accepted';
        this.auth = {}; // idToken -> {status, group, message}
        this.totalCost = null; // totalCost of the answer to every TransactionEvent Ended
    }

    asDict() {
        return { boot_status: this.bootStatus, interval: this.interval, auth_default: this.authDefault, auth: this.auth, total_cost: this.totalCost };
    }

    /** Applies a `set` admin command; throws UserError on bad input (nothing applied). */
    apply(req) {
        let { bootStatus, interval, authDefault, totalCost } = this;
        const auth = { ...this.auth };
        const has = (k) => Object.prototype.hasOwnProperty.call(req, k);
        if (has('boot_status')) {
            if (!PROTO.registrationStatuses.includes(req.boot_status)) {
                throw new UserError(`boot_status must be one of ${pyRepr(PROTO.registrationStatuses)}`);
            }
            bootStatus = req.boot_status;
        }
        if (has('interval')) {
            if (!Number.isInteger(req.interval) || req.interval < 0) throw new UserError('interval must be a non-negative integer');
            interval = req.interval;
        }
        if (has('total_cost')) {
            const tc = req.total_cost;
            if (tc !== null && (typeof tc !== 'number' || !(tc >= 0))) throw new UserError('total_cost must be a non-negative number or null');
            if (tc !== null && PROTO.version === '1.6') throw new UserError('total_cost: OCPP 1.6 has no totalCost');
            totalCost = tc;
        }
        if (has('auth_default')) {
            if (!PROTO.authorizationStatuses.includes(req.auth_default)) {
                throw new UserError(`auth_default must be one of ${pyRepr(PROTO.authorizationStatuses)}`);
            }
            authDefault = req.auth_default;
        }
        if (has('auth')) {
            const a = req.auth;
            if (a === null || typeof a !== 'object' || Array.isArray(a)) {
                throw new UserError('auth must be an object {idToken: status | {status, group} | null}');
            }
            for (const [token, raw] of Object.entries(a)) {
                let entry = raw;
                if (entry === null) {
                    delete auth[token];
                    continue;
                }
                if (typeof entry === 'string') entry = { status: entry };
                if (typeof entry !== 'object' || Array.isArray(entry)) {
                    throw new UserError(`auth[${pyRepr(token)}] must be a status string, an object or null`);
                }
                const unknown = Object.keys(entry).filter((k) => !['status', 'group', 'group_id', 'message'].includes(k)).sort();
                if (unknown.length) throw new UserError(`auth[${pyRepr(token)}]: unknown keys ${pyRepr(unknown)}`);
                const status = 'status' in entry ? entry.status : 'Accepted';
                if (!PROTO.authorizationStatuses.includes(status)) {
                    throw new UserError(`auth[${pyRepr(token)}].status must be one of ${pyRepr(PROTO.authorizationStatuses)}`);
                }
                const group = 'group' in entry ? entry.group : ('group_id' in entry ? entry.group_id : null);
                const maxLen = PROTO.groupMaxLen;
                if (group !== null && group !== undefined && (typeof group !== 'string' || !(cpLen(group) > 0 && cpLen(group) <= maxLen))) {
                    throw new UserError(`auth[${pyRepr(token)}].group must be a string of 1..${maxLen} characters`);
                }
                const message = 'message' in entry ? entry.message : null;
                if (message !== null && PROTO.version === '1.6') {
                    throw new UserError(`auth[${pyRepr(token)}].message: OCPP 1.6 has no personalMessage`);
                }
                if (message !== null && (typeof message !== 'string' || !(cpLen(message) > 0 && cpLen(message) <= 512))) {
                    throw new UserError(`auth[${pyRepr(token)}].message must be a string of 1..512 characters`);
                }
                auth[token] = { status, group: group === undefined ? null : group, message };
            }
        }
        if (has('password') && (typeof req.password !== 'string' || req.password === '')) {
            throw new UserError('password must be a non-empty string');
        }
        const unknown = Object.keys(req).filter((k) => !['cmd', 'id', 'boot_status', 'interval', 'auth', 'auth_default', 'password', 'total_cost'].includes(k)).sort();
        if (unknown.length) throw new UserError(`unknown settings ${pyRepr(unknown)}`);
        Object.assign(this, { bootStatus, interval, authDefault, auth, totalCost });
        // The Basic auth password required from now on (A01: the station took a new one).
        if (has('password')) this.password = req.password;
    }

    /** The `auth` entry of an idToken (2.0.1) / idTag (1.6), or null. */
    _authEntry(key) {
        return typeof key === 'string' && Object.prototype.hasOwnProperty.call(this.auth, key) ? this.auth[key] : null;
    }

    /** OCPP 1.6 IdTagInfo: status and the group as parentIdTag. */
    idTagInfo(idTag) {
        const entry = this._authEntry(idTag);
        const info = { status: entry ? entry.status : this.authDefault };
        if (entry && entry.group) info.parentIdTag = entry.group;
        return info;
    }

    idTokenInfo(idToken) {
        const entry = this._authEntry(idToken && typeof idToken === 'object' ? idToken.idToken : undefined);
        const info = { status: entry ? entry.status : this.authDefault };
        if (entry && entry.group) info.groupIdToken = { idToken: entry.group, type: 'Central' };
        if (entry && entry.message) info.personalMessage = { format: 'UTF8', content: entry.message };
        return info;
    }
}

class UserError extends Error {}

/**
 * OCPP 1.6: the transactionIds this CSMS assigned in its StartTransaction answers (per
 * station: integers, increasing, never given twice) and the MeterValues and StopTransaction
 * it received for each. With --state it lives in that JSON file (rewritten atomically on
 * every change, read at start), so a restarted CSMS goes on where it stopped.
 */
class TransactionStore {
    constructor(file, firstId) {
        this.file = file;
        this.firstId = firstId;
        this.nextId = {};
        this.transactions = [];
        this.unknown = []; // MeterValues / StopTransaction for an id never assigned
        if (file && fs.existsSync(file)) {
            const data = JSON.parse(fs.readFileSync(file, 'utf8'));
            this.nextId = data.next_id;
            this.transactions = data.transactions;
            this.unknown = data.unknown;
        }
    }

    _save() {
        if (this.file) {
            writeAtomic(this.file, JSON.stringify({ next_id: this.nextId, transactions: this.transactions, unknown: this.unknown }) + '\n');
        }
    }

    find(station, txId) {
        return this.transactions.find((t) => t.station === station && t.transaction_id === txId) || null;
    }

    /** Assigns the next id of `station` to this StartTransaction. */
    start(station, messageId, payload, idTagInfo) {
        const txId = Object.prototype.hasOwnProperty.call(this.nextId, station) ? this.nextId[station] : this.firstId;
        this.nextId[station] = txId + 1;
        const key = ['connectorId', 'idTag', 'meterStart', 'timestamp'];
        const repeat = this.transactions.find((t) => t.station === station && key.every((k) => t.request[k] === payload[k]));
        const tx = {
            station, transaction_id: txId, message_id: messageId, received: logTimestamp(),
            connector_id: payload.connectorId, id_tag: payload.idTag, meter_start: payload.meterStart,
            timestamp: payload.timestamp, reservation_id: payload.reservationId === undefined ? null : payload.reservationId,
            id_tag_info: idTagInfo, request: payload, duplicate_of: repeat ? repeat.transaction_id : null,
            meter_values: [], stops: [],
        };
        this.transactions.push(tx);
        this._save();
        return tx;
    }

    /**
     * Files a MeterValues ("meter_values") or StopTransaction ("stops") under its transaction;
     * null (and filed as unknown) if this CSMS never assigned that id.
     */
    add(kind, station, messageId, payload) {
        const entry = { message_id: messageId, received: logTimestamp(), payload };
        const tx = this.find(station, payload.transactionId);
        if (tx === null) this.unknown.push({ station, kind, ...entry });
        else tx[kind].push(entry);
        this._save();
        return tx;
    }

    listing(station) {
        const mine = (x) => station === null || x.station === station;
        return { transactions: this.transactions.filter(mine), unknown: this.unknown.filter(mine) };
    }
}

class EventSink {
    constructor(logPath, quiet) {
        this.quiet = quiet;
        this.fd = logPath ? fs.openSync(logPath, 'a') : null;
    }

    event(event, fields = {}) {
        if (this.fd === null) return;
        const rec = { t: logTimestamp(), event, ...fields };
        let line;
        try {
            line = JSON.stringify(rec);
        } catch (e) {
            const safe = {};
            for (const [k, v] of Object.entries(rec)) safe[k] = v === null || typeof v !== 'object' ? v : String(v);
            line = JSON.stringify(safe);
        }
        fs.writeSync(this.fd, line + '\n');
    }

    human(text) {
        if (this.quiet) return;
        const d = new Date();
        const stamp = [d.getHours(), d.getMinutes(), d.getSeconds()].map((x) => String(x).padStart(2, '0')).join(':');
        try {
            process.stderr.write(`${stamp} ${text}\n`);
        } catch (e) { /* stderr gone */ }
    }

    close() {
        if (this.fd !== null) {
            fs.closeSync(this.fd);
            this.fd = null;
        }
    }
}

/**
 * An outgoing CALLERROR frame with its code in this version's spelling (ocpp-rpc, and our
 * frame checks, use codes 1.6 spells otherwise); any other frame unchanged.
 */
function respellCallError(text) {
    if (!text.startsWith('[4,')) return text;
    let msg;
    try {
        msg = JSON.parse(text);
    } catch (e) {
        return text;
    }
    if (!Array.isArray(msg) || msg.length !== 5 || typeof msg[2] !== 'string') return text;
    const code = PROTO.errorCode(msg[2]);
    return code === msg[2] ? text : JSON.stringify([4, msg[1], code, msg[3], msg[4]]);
}

// --------------------------------------------------------------------------
// One connected Charging Station (CSMS side)
// --------------------------------------------------------------------------

class StationSession {
    constructor(csms, client, info) {
        this.csms = csms;
        this.sink = csms.sink;
        this.settings = csms.settings;
        this.client = client;
        this.ws = client._ws;
        this.id = info.station;
        this.info = info;
        this.inCalls = new Map(); // in-CALL id -> action (for logging our responses)
        this.outCalls = new Map(); // out-CALL id -> action
        this.expired = new Map(); // timed-out out-CALL id -> action
        this.responses = new Map(); // parsed response frame per out-CALL id
        this.rawWaiters = new Map(); // raw CALL id -> resolve
        this.closedByCsms = false;
        this.verbatim = false; // admin `raw`: no respelling of a CALLERROR code
        this._lock = Promise.resolve();
        this.closed = new Promise((resolve) => this.ws.once('close', () => resolve()));
        this._hook();
        this._registerHandlers();
    }

    // ---- hooking into ocpp-rpc's WebSocket -----------------------------------

    _hook() {
        const ws = this.ws;
        const client = this.client;
        if (!ws || typeof ws.send !== 'function' || typeof client._onMessage !== 'function') {
            throw new Error('ocpp-rpc internals changed: cannot hook the WebSocket');
        }
        // Every outgoing frame (ocpp-rpc's and ours) is recorded just before it is sent.
        const origSend = ws.send.bind(ws);
        ws.send = (data, options, cb) => {
            let text = typeof data === 'string' ? data : Buffer.from(data).toString('utf8');
            if (typeof data === 'string' && !this.verbatim) data = text = respellCallError(text);
            this.record('out', text, typeof data !== 'string');
            if (ws.readyState !== ws.OPEN) this.sink.event('send_failed', { station: this.id, raw: text });
            return origSend(data, options, cb);
        };
        // Incoming frames: ocpp-rpc attaches its 'message' listener on the next tick and
        // calls client._onMessage(data); we listen first, record the exact frame, run
        // the checks ocpp-rpc lacks, and hand on only what passes.
        const libOnMessage = client._onMessage.bind(client);
        client._onMessage = () => {};
        ws.on('message', (data, isBinary) => {
            try {
                this.onFrame(Buffer.isBuffer(data) ? data : Buffer.from(data), isBinary, libOnMessage);
            } catch (e) {
                this.csms.internalError(e, this.id);
            }
        });
        ws.once('close', (code, reason) => this.csms.onStationClosed(this, code, reason));
        if (this.csms.args.debug) {
            client.on('badMessage', ({ error }) => this.sink.human(`${this.id} [debug] ocpp-rpc badMessage: ${error && error.message}`));
            client.on('strictValidationFailure', (e) => this.sink.human(
                `${this.id} [debug] ocpp-rpc strictValidationFailure (${e.outbound ? 'outbound' : 'inbound'} ${e.isCall ? 'call' : 'result'} ${e.method}): ${e.error && e.error.message}`));
            client.on('socketError', (e) => this.sink.human(`${this.id} [debug] socket error: ${e.message}`));
        }
    }

    // ---- frame recording ---------------------------------------------------

    record(direction, text, binary = false) {
        const rec = { station: this.id, dir: direction, type: null, id: null, action: null, payload: null };
        if (binary) rec.binary = true;
        const arrow = direction === 'in' ? '->' : '<-';
        let msg = null;
        let ok = false;
        try {
            msg = JSON.parse(text);
            ok = Array.isArray(msg) && msg.length >= 3 && [2, 3, 4].includes(msg[0]);
        } catch (e) { /* malformed */ }
        if (!ok) {
            rec.raw = text;
            this.sink.event('message', rec);
            this.sink.human(`${this.id} ${arrow} (malformed frame) ${truncate(text, 300)}`);
            return;
        }
        const [mtype, msgId] = msg;
        rec.type = mtype;
        rec.id = msgId;
        const key = typeof msgId === 'string' ? msgId : compact(msgId);
        let human;
        if (mtype === 2) {
            const action = typeof msg[2] === 'string' ? msg[2] : null;
            rec.action = action;
            rec.payload = msg.length > 3 ? msg[3] : null;
            if (action !== null) (direction === 'in' ? this.inCalls : this.outCalls).set(key, action);
            human = `${this.id} ${arrow} ${action} ${shortJson(rec.payload)}`;
        } else {
            let action;
            if (direction === 'out') {
                action = this.inCalls.has(key) ? this.inCalls.get(key) : null;
                this.inCalls.delete(key);
            } else {
                action = this.outCalls.get(key) || this.expired.get(key) || null;
            }
            rec.action = action;
            if (mtype === 3) {
                rec.payload = msg[2];
                human = `${this.id} ${arrow} ${action || '?'} result ${shortJson(msg[2])}`;
            } else {
                rec.error_code = msg[2];
                rec.error_description = msg.length > 3 ? msg[3] : null;
                rec.error_details = msg.length > 4 ? msg[4] : null;
                human = `${this.id} ${arrow} ${action || '?'} CALLERROR ${msg[2]}: ${rec.error_description} ${shortJson(rec.error_details, 300)}`;
            }
        }
        rec.raw = text;
        this.sink.event('message', rec);
        this.sink.human(human);
    }

    violation(reason, raw, extra = {}) {
        this.sink.event('violation', { station: this.id, reason, raw: raw === undefined ? null : raw, ...extra });
        this.sink.human(`${this.id} !! protocol violation: ${reason}`);
    }

    warning(reason, extra = {}) {
        this.sink.event('warning', { station: this.id, reason, ...extra });
        this.sink.human(`${this.id} !! warning: ${reason}`);
    }

    /** Sends a text frame (recorded by the send hook); resolves false if the socket is not open. */
    sendFrame(text, verbatim = false) {
        return new Promise((resolve) => {
            if (this.ws.readyState !== this.ws.OPEN) {
                this.record('out', text);
                this.sink.event('send_failed', { station: this.id, raw: text });
                resolve(false);
                return;
            }
            this.verbatim = verbatim; // the send hook runs synchronously in ws.send
            try {
                this.ws.send(text, (err) => resolve(!err));
            } finally {
                this.verbatim = false;
            }
        });
    }

    sendCallError(msgId, code, description, details) {
        return this.sendFrame(JSON.stringify([4, msgId, code, truncate(description, 255), details]));
    }

    // ---- routing -------------------------------------------------------------

    onFrame(data, isBinary, libOnMessage) {
        const text = data.toString('utf8');
        this.record('in', text, isBinary);
        let msg;
        let floatPaths;
        try {
            [msg, floatPaths] = checkFrame(text, isBinary);
        } catch (e) {
            if (!(e instanceof FrameError)) throw e;
            this.violation(`${PROTO.errorCode(e.code)}: ${e.description}`, text);
            if (e.answer) this.sendCallError(e.msgId, e.code, e.description, { cause: e.description });
            return;
        }
        const [mtype, msgId] = msg;
        const sub = (idx) => floatPaths.filter((p) => p[0] === idx).map((p) => p.slice(1));
        if (mtype === 2) {
            const action = msg[2];
            const state = this.csms.bootState.get(this.id);
            if (action !== 'BootNotification' && (state === 'Pending' || state === 'Rejected')) {
                this.warning(`${action} sent while the last BootNotification was answered ${state}` +
                    (state === 'Pending' ? ' (allowed only when triggered by TriggerMessage)' : ''), { action, id: msgId });
            }
            if (PROTO.allActions.has(action) && !PROTO.csToCsms.has(action)) {
                // ocpp-rpc would answer NotImplemented; OCPP-J says NotSupported for a known action.
                this.sendCallError(msgId, 'NotSupported', `${action} is recognized but not supported by this CSMS`, {});
                return;
            }
            // Unknown actions: ocpp-rpc answers NotImplemented (no handler registered).
            this._passOn(libOnMessage, data, `urn:${action}.req`, sub(3));
            return;
        }
        // CALLRESULT / CALLERROR
        if (this.rawWaiters.has(msgId)) {
            this.outCalls.delete(msgId);
            const resolve = this.rawWaiters.get(msgId);
            this.rawWaiters.delete(msgId);
            resolve(msg);
            return;
        }
        if (!this.outCalls.has(msgId)) {
            if (this.expired.has(msgId)) {
                const action = this.expired.get(msgId);
                this.expired.delete(msgId);
                this.warning(`late response to ${action} (the CALL already timed out)`, { id: msgId, action });
            } else {
                this.violation('response to an unknown MessageId (no outstanding CALL)', text, { id: msgId });
            }
            return;
        }
        const action = this.outCalls.get(msgId);
        this.outCalls.delete(msgId);
        this.responses.set(msgId, msg);
        this._passOn(libOnMessage, data, `urn:${action}.conf`, mtype === 3 ? sub(2) : []);
    }

    _passOn(libOnMessage, data, schemaId, floatPaths) {
        currentInbound = { schemaId, floatPaths };
        try {
            libOnMessage(data);
        } finally {
            currentInbound = null;
        }
    }

    // ---- admin-initiated CALLs ---------------------------------------------

    /** Runs fn with this station's call lock (one admin CALL at a time), or times out waiting. */
    async _withCallLock(deadline, fn) {
        const prev = this._lock;
        let release;
        const mine = new Promise((r) => { release = r; });
        this._lock = prev.then(() => mine);
        try {
            const got = await raceOutcome(prev, deadline - Date.now(), this.closed);
            if (got.status !== 'ok') return got.status;
            return await fn();
        } finally {
            release();
        }
    }

    async adminCall(action, payload, timeout) {
        const deadline = Date.now() + timeout * 1000;
        const timeoutResult = { ok: false, error: `timeout: no response to ${action} within ${pySeconds(timeout)}s` };
        const result = await this._withCallLock(deadline, () => this._adminCall(action, payload, timeout, deadline, timeoutResult));
        if (result === 'timeout') return timeoutResult;
        if (result === 'closed') return { ok: false, error: 'station disconnected' };
        return result;
    }

    async _adminCall(action, payload, timeout, deadline, timeoutResult) {
        let sentId = null;
        const onCall = ({ outbound, payload: frame }) => {
            if (outbound && sentId === null) sentId = frame[1];
        };
        this.client.on('call', onCall);
        let outcome;
        try {
            const remaining = deadline - Date.now();
            // ocpp-rpc validates the request (strict mode) before sending it.
            const p = this.client.call(action, payload, { callTimeoutMs: Math.max(1, remaining) + 1000 });
            p.catch(() => {});
            outcome = await raceOutcome(p, remaining, this.closed);
        } finally {
            this.client.off('call', onCall);
        }
        const timedOut = outcome.status === 'timeout' || (outcome.status === 'error' && outcome.error instanceof TimeoutError);
        if (timedOut) {
            if (sentId !== null && this.outCalls.has(sentId)) {
                this.expired.set(sentId, this.outCalls.get(sentId));
                this.outCalls.delete(sentId);
            }
            return timeoutResult;
        }
        const response = sentId !== null ? this.responses.get(sentId) : undefined;
        if (sentId !== null) this.responses.delete(sentId);
        if (outcome.status === 'closed' && response === undefined) return { ok: false, error: 'station disconnected' };
        const error = outcome.status === 'error' ? outcome.error : null;
        if (response === undefined) {
            if (error instanceof RPCError && sentId === null) {
                return { ok: false, error: `request rejected by schema validation: ${describeError(error)}` };
            }
            if (this.ws.readyState !== this.ws.OPEN) return { ok: false, error: 'station disconnected' };
            return { ok: false, error: `call failed: ${describeError(error)}` };
        }
        if (response[0] === 4) {
            return {
                ok: false,
                error: `CALLERROR ${response[2]}: ${response[3]}`,
                error_code: response[2],
                error_description: response[3],
                error_details: response[4],
            };
        }
        if (error !== null) {
            const reason = `CALLRESULT to ${action} failed schema validation: ${describeError(error)}`;
            this.violation(reason, compact(response), { id: sentId, action });
            return { ok: false, error: reason, invalid_response: response[2] };
        }
        return { ok: true, response: response[2] };
    }

    /** Sends a frame verbatim (no validation). If it is a CALL, waits for its response. */
    async adminRaw(frame, timeout) {
        let msgId = null;
        try {
            const msg = JSON.parse(frame);
            if (Array.isArray(msg) && msg.length >= 2 && msg[0] === 2 && typeof msg[1] === 'string') msgId = msg[1];
        } catch (e) { /* sent as is */ }
        let waiter = null;
        if (msgId !== null) waiter = new Promise((resolve) => this.rawWaiters.set(msgId, resolve));
        const sent = await this.sendFrame(frame, true);
        if (!sent) {
            if (msgId !== null) this.rawWaiters.delete(msgId);
            return { ok: false, error: 'station disconnected' };
        }
        if (waiter === null) return { ok: true };
        const outcome = await raceOutcome(waiter, timeout * 1000, this.closed);
        if (outcome.status === 'closed') {
            this.rawWaiters.delete(msgId);
            return { ok: false, error: 'station disconnected' };
        }
        if (outcome.status === 'timeout') {
            this.rawWaiters.delete(msgId);
            this.expired.set(msgId, this.outCalls.has(msgId) ? this.outCalls.get(msgId) : null);
            this.outCalls.delete(msgId);
            return { ok: false, error: `timeout: no response within ${pySeconds(timeout)}s` };
        }
        return { ok: true, response: outcome.value };
    }

    // ---- handlers for every CS -> CSMS action ----------------------------

    /** BootNotification's answer from the settings (the same fields in 1.6 and 2.0.1). */
    _bootAnswer() {
        const status = this.settings.bootStatus;
        this.csms.bootState.set(this.id, status);
        return { currentTime: utcNowIso(), interval: this.settings.interval, status };
    }

    _handlers201() {
        const s = this.settings;
        return {
            BootNotification: () => this._bootAnswer(),
            Heartbeat: () => ({ currentTime: utcNowIso() }),
            StatusNotification: () => ({}),
            Authorize: ({ params }) => ({ idTokenInfo: s.idTokenInfo(params.idToken) }),
            TransactionEvent: ({ params }) => {
                const answer = params.idToken !== undefined ? { idTokenInfo: s.idTokenInfo(params.idToken) } : {};
                if (params.eventType === 'Ended' && s.totalCost !== null) answer.totalCost = s.totalCost;
                return answer;
            },
            MeterValues: () => ({}),
            NotifyReport: () => ({}),
            NotifyEvent: () => ({}),
            SecurityEventNotification: () => ({}),
            FirmwareStatusNotification: () => ({}),
            LogStatusNotification: () => ({}),
            SignCertificate: () => ({ status: 'Accepted' }),
            DataTransfer: () => ({ status: 'UnknownVendorId' }),
            // This test CSMS has no OCSP responder.
            GetCertificateStatus: () => ({ status: 'Failed' }),
            NotifyCustomerInformation: () => ({}),
            NotifyMonitoringReport: () => ({}),
            ReportChargingProfiles: () => ({}),
            NotifyChargingLimit: () => ({}),
            ClearedChargingLimit: () => ({}),
            NotifyEVChargingNeeds: () => ({ status: 'Accepted' }),
            NotifyEVChargingSchedule: () => ({ status: 'Accepted' }),
            NotifyDisplayMessages: () => ({}),
            ReservationStatusUpdate: () => ({}),
            PublishFirmwareStatusNotification: () => ({}),
            // No contract-certificate backend: answer Failed (exiResponse is required).
            Get15118EVCertificate: () => ({ status: 'Failed', exiResponse: '' }),
        };
    }

    /** OCPP 1.6: every Charge Point -> Central System action (Core, Firmware Management,
     *  security whitepaper edition 3). */
    _handlers16() {
        const s = this.settings;
        const txs = this.csms.transactions;
        return {
            BootNotification: () => this._bootAnswer(),
            Heartbeat: () => ({ currentTime: utcNowIso() }),
            Authorize: ({ params }) => ({ idTagInfo: s.idTagInfo(params.idTag) }),
            StartTransaction: ({ params, messageId }) => {
                const idTagInfo = s.idTagInfo(params.idTag);
                const tx = txs.start(this.id, messageId, params, idTagInfo);
                this.sink.event('transaction', {
                    station: this.id, transaction_id: tx.transaction_id, message_id: messageId,
                    connector_id: tx.connector_id, id_tag: tx.id_tag, meter_start: tx.meter_start,
                    timestamp: tx.timestamp, id_tag_status: idTagInfo.status, duplicate_of: tx.duplicate_of,
                });
                if (tx.duplicate_of !== null) {
                    this.warning(`StartTransaction repeats transaction ${tx.duplicate_of} (same connectorId, idTag, ` +
                        `meterStart and timestamp); it gets a new id ${tx.transaction_id}`, { id: messageId, action: 'StartTransaction' });
                }
                return { transactionId: tx.transaction_id, idTagInfo };
            },
            MeterValues: ({ params, messageId }) => {
                if (params.transactionId !== undefined) this._file('meter_values', 'MeterValues', messageId, params);
                return {};
            },
            StopTransaction: ({ params, messageId }) => {
                this._file('stops', 'StopTransaction', messageId, params);
                return params.idTag !== undefined ? { idTagInfo: s.idTagInfo(params.idTag) } : {};
            },
            StatusNotification: () => ({}),
            DataTransfer: () => ({ status: 'UnknownVendorId' }),
            DiagnosticsStatusNotification: () => ({}),
            FirmwareStatusNotification: () => ({}),
            SecurityEventNotification: () => ({}),
            SignCertificate: () => ({ status: 'Accepted' }),
            LogStatusNotification: () => ({}),
            SignedFirmwareStatusNotification: () => ({}),
        };
    }

    /**
     * Files a MeterValues / StopTransaction under the transaction its transactionId names:
     * an id this CSMS never gave this station is a violation (a made-up id).
     */
    _file(kind, action, messageId, params) {
        const tx = this.csms.transactions.add(kind, this.id, messageId, params);
        const txId = params.transactionId;
        if (tx === null) {
            this.violation(`${action} for transactionId ${txId}, which this CSMS never assigned to ${pyRepr(this.id)}`,
                compact(params), { id: messageId, action });
        } else if (tx.stops.length && (kind === 'meter_values' || tx.stops.length > 1)) {
            this.warning(`${action} for transactionId ${txId}, which was already stopped`, { id: messageId, action });
        }
    }

    _registerHandlers() {
        const handlers = PROTO.version === '1.6' ? this._handlers16() : this._handlers201();
        for (const action of PROTO.csToCsms) {
            const fn = handlers[action];
            if (!fn) throw new Error(`no handler for ${action}`);
            this.client.handle(action, async (call) => {
                try {
                    return fn(call);
                } catch (e) {
                    this.csms.internalError(e, this.id);
                    throw createRPCError('InternalError', truncate(`CSMS internal error: ${e}`, 255), {});
                }
            });
        }
    }
}

function describeError(e) {
    if (e instanceof RPCError) {
        const text = `${e.rpcErrorCode}: ${e.message || e.rpcErrorMessage}`.trim();
        return text.split('\n')[0];
    }
    if (e instanceof Error) return `${e.name}: ${e.message}`.split('\n')[0];
    return String(e);
}

// --------------------------------------------------------------------------
// The server
// --------------------------------------------------------------------------

class CSMS {
    constructor(args) {
        this.args = args;
        this.settings = new Settings(args.bootStatus, args.interval);
        this.sink = new EventSink(args.log, args.quiet);
        this.transactions = new TransactionStore(args.state, args.firstTransactionId);
        this.stations = new Map();
        this.bootState = new Map();
        this.shuttingDown = false;
        this.handshakes = new WeakMap(); // http request -> handshake info
    }

    internalError(err, station = null) {
        const text = err && err.stack ? err.stack : String(err);
        this.sink.event('internal_error', { station, error: String(err && err.message ? err.message : err) });
        if (!this.args.quiet) process.stderr.write(`csms.js: internal error: ${text}\n`);
    }

    // ---- WebSocket handshake -------------------------------------------------

    _handshakeInfo(req) {
        const p = req.url || '/';
        const [user, password, authError] = parseBasicAuth(req.headers.authorization);
        return {
            station: parseStationPath(p), path: p, user, password, authError,
            offered: offeredSubprotocols(req), peer: peerOf(req.socket),
        };
    }

    _reject(socket, status, reason, info, headers = {}) {
        this.sink.event('rejected', {
            station: info.station, path: info.path, reason, http_status: status,
            auth_user: info.user, subprotocols: info.offered, peer: info.peer,
        });
        this.sink.human(`${info.station || '?'} handshake rejected (${status}): ${reason}`);
        const body = Buffer.from(reason + '\n', 'utf8');
        const head = [`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}`, 'Connection: close',
            'Content-Type: text/plain; charset=utf-8', `Content-Length: ${body.length}`,
            ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)].join('\r\n');
        if (socket.writable) socket.end(Buffer.concat([Buffer.from(head + '\r\n\r\n'), body]));
        else socket.destroy();
    }

    onUpgrade(req, socket, head) {
        socket.on('error', () => {});
        const info = this._handshakeInfo(req);
        const unauthorized = { 'WWW-Authenticate': 'Basic realm="OCPP", charset="UTF-8"' };
        if (this.shuttingDown) return this._reject(socket, 503, 'CSMS shutting down', info);
        if (info.station === null) {
            return this._reject(socket, 404, 'no station id: the URL path must end with /<station id>', info);
        }
        // ocpp-rpc derives the identity itself, with decodeURIComponent on the WHATWG-URL
        // path (a bad %-escape would crash its upgrade handler): check it can.
        try {
            const url = new URL('http://localhost' + (req.url || '/'));
            decodeURIComponent(url.pathname.split('/').pop());
        } catch (e) {
            return this._reject(socket, 400, `malformed request path: ${e.message}`, info);
        }
        if (!info.offered.includes(PROTO.subprotocol)) {
            return this._reject(socket, 400, `subprotocol ${PROTO.subprotocol} not offered (offered: ${pyRepr(info.offered)})`, info);
        }
        const required = this.settings.password != null ? this.settings.password : this.args.password;
        if (required !== null) {
            if (info.authError !== null) return this._reject(socket, 401, info.authError, info, unauthorized);
            if (info.user !== info.station) {
                return this._reject(socket, 401, `Basic auth user ${pyRepr(info.user)} does not match station id ` +
                    `${pyRepr(info.station)}`, info, unauthorized);
            }
            const a = crypto.createHash('sha256').update(info.password, 'utf8').digest();
            const b = crypto.createHash('sha256').update(required, 'utf8').digest();
            if (!crypto.timingSafeEqual(a, b)) {
                return this._reject(socket, 401, `wrong password for ${pyRepr(info.user)}`, info, unauthorized);
            }
        }
        this.handshakes.set(req, info);
        Promise.resolve(this.rpc.handleUpgrade(req, socket, head)).catch((e) => {
            this.internalError(e, info.station);
            socket.destroy();
        });
        return undefined;
    }

    onClient(client) {
        const req = client.handshake && client.handshake.request;
        const info = (req && this.handshakes.get(req)) || null;
        if (info === null) {
            client.close({ force: true }).catch(() => {});
            return;
        }
        const station = info.station;
        const session = new StationSession(this, client, info);
        const old = this.stations.get(station);
        this.stations.set(station, session);
        this.sink.event('connected', {
            station, subprotocol: client.protocol || null, auth_user: info.user, auth_ok: true,
            path: info.path, peer: info.peer, password_required: this.args.password !== null,
        });
        this.sink.human(`${station} connected (subprotocol ${client.protocol}, path ${info.path}, from ${info.peer})`);
        if (old) {
            session.warning('station reconnected while its previous connection was still open; closing the old connection');
            old.closedByCsms = true;
            old.client.close({ code: 1000, reason: 'replaced by a new connection' }).catch(() => {});
        }
    }

    onStationClosed(session, code, reason) {
        const station = session.id;
        if (this.stations.get(station) === session) this.stations.delete(station);
        const text = Buffer.isBuffer(reason) ? reason.toString('utf8') : String(reason || '');
        this.sink.event('disconnected', {
            station, code, reason: text,
            initiator: session.closedByCsms || this.shuttingDown ? 'csms' : 'station',
        });
        this.sink.human(`${station} disconnected (code ${code}${text ? ' ' + text : ''})`);
    }

    // ---- admin protocol --------------------------------------------------------

    handleAdmin(sock) {
        const LIMIT = 64 * 2 ** 20;
        let buf = '';
        let chain = Promise.resolve();
        let closed = false;
        const write = (obj) => {
            if (!closed && !sock.destroyed) sock.write(JSON.stringify(obj) + '\n');
        };
        sock.setEncoding('utf8');
        sock.on('error', () => {});
        sock.on('close', () => { closed = true; });
        sock.on('data', (chunk) => {
            buf += chunk;
            let nl;
            while ((nl = buf.indexOf('\n')) >= 0) {
                const line = buf.slice(0, nl);
                buf = buf.slice(nl + 1);
                chain = chain.then(() => this._adminLine(line, write));
            }
            if (buf.length > LIMIT) {
                buf = '';
                chain = chain.then(() => {
                    write({ ok: false, error: 'request line too long' });
                    sock.end();
                });
            }
        });
        sock.on('end', () => {
            if (buf.trim()) {
                const line = buf;
                buf = '';
                chain = chain.then(() => this._adminLine(line, write));
            }
            chain.then(() => sock.end());
        });
    }

    async _adminLine(line, write) {
        if (!line.trim()) return;
        let req = null;
        let resp;
        try {
            req = JSON.parse(line);
            if (req === null || typeof req !== 'object' || Array.isArray(req)) {
                req = null;
                throw new Error('request must be a JSON object');
            }
        } catch (e) {
            resp = { ok: false, error: `invalid request: ${e.message}` };
        }
        if (req !== null) {
            try {
                resp = await this.adminCommand(req);
            } catch (e) {
                this.internalError(e);
                resp = { ok: false, error: `internal error: ${e}` };
            }
            if ('id' in req) resp.id = req.id;
        }
        this.sink.event('admin', { request: req, ok: resp.ok === undefined ? null : resp.ok, error: resp.error === undefined ? null : resp.error });
        write(resp);
    }

    _station(req) {
        if (typeof req.station !== 'string') throw new UserError("'station' (string) is required");
        const s = this.stations.get(req.station);
        if (!s) throw new UserError(`station ${pyRepr(req.station)} is not connected`);
        return s;
    }

    static _timeout(req, dflt = 30) {
        const t = 'timeout' in req ? req.timeout : dflt;
        if (typeof t !== 'number' || !Number.isFinite(t) || t <= 0) {
            throw new UserError("'timeout' must be a positive number of seconds");
        }
        return t;
    }

    async adminCommand(req) {
        const cmd = req.cmd;
        try {
            switch (cmd) {
            case 'ping':
                return { ok: true };
            case 'stations':
                return { ok: true, stations: [...this.stations.keys()].sort() };
            case 'set':
                this.settings.apply(req);
                return { ok: true, settings: this.settings.asDict() };
            case 'settings':
                return { ok: true, settings: this.settings.asDict() };
            case 'transactions': {
                if (PROTO.version !== '1.6') {
                    throw new UserError('transactions: only with --ocpp 1.6 (in 2.0.1 the station chooses the transactionId)');
                }
                const station = 'station' in req ? req.station : null;
                if (station !== null && typeof station !== 'string') throw new UserError("'station' must be a string");
                return { ok: true, ...this.transactions.listing(station) };
            }
            case 'call': {
                const action = req.action;
                if (!PROTO.csmsToCs.has(action)) {
                    throw new UserError(`'action' must be an OCPP ${PROTO.version} CSMS->CS action, got ${pyRepr(action)}`);
                }
                const payload = 'payload' in req ? req.payload : {};
                if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) {
                    throw new UserError("'payload' must be a JSON object");
                }
                const timeout = CSMS._timeout(req);
                return await this._station(req).adminCall(action, payload, timeout);
            }
            case 'raw': {
                const frame = typeof req.frame === 'string' ? req.frame : compact(req.frame);
                const timeout = CSMS._timeout(req);
                return await this._station(req).adminRaw(frame, timeout);
            }
            case 'disconnect': {
                const session = this._station(req);
                const code = 'code' in req ? req.code : 1000;
                const reason = 'reason' in req ? req.reason : 'closed by CSMS';
                if (!Number.isInteger(code) || !isValidCloseCode(code)) throw new UserError(`invalid close code ${pyRepr(code)}`);
                if (typeof reason !== 'string' || Buffer.byteLength(reason) > 123) {
                    throw new UserError("'reason' must be a string of at most 123 bytes");
                }
                session.closedByCsms = true;
                await raceOutcome(session.client.close({ code, reason }), 10000, session.closed);
                return { ok: true };
            }
            case 'wait_connected': {
                if (typeof req.station !== 'string') throw new UserError("'station' (string) is required");
                const timeout = CSMS._timeout(req);
                const deadline = Date.now() + timeout * 1000;
                while (!this.stations.has(req.station)) {
                    if (Date.now() >= deadline) {
                        return { ok: false, error: `station ${pyRepr(req.station)} did not connect within ${pySeconds(timeout)}s` };
                    }
                    await sleep(50);
                }
                return { ok: true };
            }
            default:
                return { ok: false, error: `unknown cmd ${pyRepr(cmd)}` };
            }
        } catch (e) {
            if (e instanceof UserError) return { ok: false, error: e.message };
            throw e;
        }
    }

    // ---- lifecycle -----------------------------------------------------------

    async run() {
        const args = this.args;
        this.validator = new StrictValidator();
        // Self-check: the date-time rule must be in force.
        let overrideWorks = false;
        try {
            this.validator.validate('urn:Heartbeat.conf', { currentTime: '2024-01-01T00:00:00' });
        } catch (e) {
            overrideWorks = e instanceof RPCError;
        }
        if (!overrideWorks) throw new Error('date-time validation is not in force (ocpp-rpc internals changed?)');

        this.rpc = new RPCServer({
            protocols: [PROTO.subprotocol],
            strictMode: true,
            strictModeValidators: [this.validator],
            callTimeoutMs: 24 * 3600 * 1000, // per-call timeouts come from the admin request
            pingIntervalMs: args.pingInterval > 0 ? args.pingInterval * 1000 : 0,
            respondWithDetailedErrors: false,
            callConcurrency: 1,
            wssOptions: { maxPayload: args.maxSize, perMessageDeflate: false },
        });
        this.rpc.on('error', (e) => this.internalError(e));
        this.rpc.on('client', (client) => {
            try {
                this.onClient(client);
            } catch (e) {
                this.internalError(e);
                client.close({ force: true }).catch(() => {});
            }
        });
        this.rpc.on('upgradeAborted', ({ error, request }) => {
            const info = (request && this.handshakes.get(request)) || null;
            if (info) {
                this.sink.event('rejected', {
                    station: info.station, path: info.path, reason: `ocpp-rpc aborted the upgrade: ${error && error.message}`,
                    http_status: (error && error.code) || 500, auth_user: info.user, subprotocols: info.offered, peer: info.peer,
                });
            }
        });

        this.httpServer = http.createServer((req, res) => {
            res.writeHead(426, { 'Content-Type': 'text/plain; charset=utf-8', Upgrade: 'websocket', Connection: 'close' });
            res.end(`Upgrade Required: this is an OCPP ${PROTO.version} WebSocket endpoint\n`);
        });
        this.httpServer.on('upgrade', (req, socket, head) => {
            try {
                this.onUpgrade(req, socket, head);
            } catch (e) {
                this.internalError(e);
                socket.destroy();
            }
        });
        this.httpServer.on('clientError', (err, socket) => socket.destroy());
        await new Promise((resolve, reject) => {
            this.httpServer.once('error', reject);
            this.httpServer.listen({ port: args.port, host: args.host }, () => {
                this.httpServer.off('error', reject);
                resolve();
            });
        });
        const port = this.httpServer.address().port;

        let adminPort = null;
        if (args.adminPortFile) {
            this.adminServer = net.createServer((sock) => this.handleAdmin(sock));
            await new Promise((resolve, reject) => {
                this.adminServer.once('error', reject);
                this.adminServer.listen({ port: 0, host: '127.0.0.1' }, resolve);
            });
            adminPort = this.adminServer.address().port;
            writeAtomic(args.adminPortFile, `${adminPort}\n`);
        }
        if (args.portFile) writeAtomic(args.portFile, `${port}\n`);
        this.sink.event('listening', {
            host: args.host, port, admin_port: adminPort, subprotocol: PROTO.subprotocol, ocpp_version: PROTO.version,
            password_required: args.password !== null, boot_status: this.settings.bootStatus,
            interval: this.settings.interval, strict_datetime: STRICT_DATETIME, pid: process.pid,
            implementation: `ocpp-rpc/${OCPP_RPC_VERSION}`,
        });
        this.sink.human(`CSMS listening on ws://${args.host}:${port}/<path>/<station id> (subprotocol ${PROTO.subprotocol}` +
            (adminPort ? `, admin on 127.0.0.1:${adminPort}` : '') + `; ocpp-rpc ${OCPP_RPC_VERSION} strict mode)`);

        await new Promise((resolve) => {
            process.once('SIGTERM', resolve);
            process.once('SIGINT', resolve);
        });
        await this.shutdown();
    }

    async shutdown() {
        this.shuttingDown = true;
        this.sink.human('CSMS shutting down');
        if (this.adminServer) this.adminServer.close();
        this.httpServer.close();
        const sessions = [...this.stations.values()];
        await Promise.all(sessions.map((s) => raceOutcome(
            s.client.close({ code: 1001, reason: '' }), 15000, s.closed)));
        for (const s of sessions) if (s.ws.readyState !== s.ws.CLOSED) s.ws.terminate();
        await Promise.all(sessions.map((s) => raceOutcome(s.closed, 1000, null)));
        if (typeof this.httpServer.closeAllConnections === 'function') this.httpServer.closeAllConnections();
        this.sink.event('stopped');
        this.sink.close();
        return 0;
    }
}

function isValidCloseCode(code) {
    return (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999);
}

function peerOf(socket) {
    if (!socket || !socket.remoteAddress) return null;
    return `${socket.remoteAddress}:${socket.remotePort}`;
}

// --------------------------------------------------------------------------
// Command line
// --------------------------------------------------------------------------

const USAGE = `usage: csms.js [-h] [--host HOST] [--port PORT] [--port-file PORT_FILE]
               [--admin-port-file ADMIN_PORT_FILE] [--log LOG] [--password PASSWORD]
               [--ocpp {1.6,2.0.1}] [--state STATE] [--first-transaction-id FIRST_TRANSACTION_ID]
               [--boot-status {${REGISTRATION_STATUSES.join(',')}}] [--interval INTERVAL]
               [--ping-interval PING_INTERVAL] [--max-size MAX_SIZE]
               [--lenient-datetime] [--quiet] [--debug]`;

const HELP = `${USAGE}

Scriptable OCPP 2.0.1 / 1.6J CSMS test peer (ocpp-rpc strict mode). Same CLI, log
and admin protocol as tests/csms/csms.py.

options:
  -h, --help            show this help message and exit
  --host HOST           address to listen on (default: 127.0.0.1)
  --port PORT           WebSocket port; 0 = ephemeral (default: 9000)
  --port-file PORT_FILE
                        write the actual WebSocket port here (atomically) once listening
  --admin-port-file ADMIN_PORT_FILE
                        also serve the JSON-lines admin protocol on 127.0.0.1:<ephemeral>; write its port here
  --log LOG             append a JSON-lines record of all events/messages to this file
  --password PASSWORD   require HTTP Basic auth <station id>:<PASSWORD>
  --ocpp {1.6,2.0.1}    OCPP version: the subprotocol required (ocpp2.0.1 / ocpp1.6) and the messages spoken
                        (default: 2.0.1)
  --state STATE         OCPP 1.6: keep the assigned transactionIds (and what was received for them) in this
                        JSON file, read again at start (survives a restart) (default: None)
  --first-transaction-id FIRST_TRANSACTION_ID
                        OCPP 1.6: the first transactionId given to each station (default: 1)
  --boot-status {${REGISTRATION_STATUSES.join(',')}}
                        status of BootNotificationResponse (default: Accepted)
  --interval INTERVAL   interval in BootNotificationResponse (default: 10)
  --ping-interval PING_INTERVAL
                        WebSocket ping interval (and pong timeout) in seconds; 0 disables pings (default: 20)
  --max-size MAX_SIZE   maximum incoming frame size in bytes (default: 4194304)
  --lenient-datetime    accept any RFC 3339 date-time (offsets other than Z, >3 fractional digits)
  --quiet               no human-readable output on stderr
  --debug               verbose ocpp-rpc event output on stderr
`;

function usageError(msg) {
    process.stderr.write(`${USAGE}\ncsms.js: error: ${msg}\n`);
    process.exit(2);
}

function parseArgs(argv) {
    const args = {
        host: '127.0.0.1', port: 9000, portFile: null, adminPortFile: null, log: null, password: null,
        bootStatus: 'Accepted', interval: 10, pingInterval: 20, maxSize: 4 * 2 ** 20,
        ocpp: '2.0.1', state: null, firstTransactionId: 1,
        lenientDatetime: false, quiet: false, debug: false,
    };
    const valued = {
        '--host': 'host', '--port': 'port', '--port-file': 'portFile', '--admin-port-file': 'adminPortFile',
        '--log': 'log', '--password': 'password', '--boot-status': 'bootStatus', '--interval': 'interval',
        '--ping-interval': 'pingInterval', '--max-size': 'maxSize',
        '--ocpp': 'ocpp', '--state': 'state', '--first-transaction-id': 'firstTransactionId',
    };
    const flags = { '--lenient-datetime': 'lenientDatetime', '--quiet': 'quiet', '--debug': 'debug' };
    const intArg = (name, v) => {
        if (!/^[-+]?\d+$/.test(v.trim())) usageError(`argument ${name}: invalid int value: '${v}'`);
        return parseInt(v, 10);
    };
    for (let i = 0; i < argv.length; i++) {
        let a = argv[i];
        if (a === '-h' || a === '--help') {
            process.stdout.write(HELP);
            process.exit(0);
        }
        let value = null;
        const eq = a.indexOf('=');
        if (a.startsWith('--') && eq > 0) {
            value = a.slice(eq + 1);
            a = a.slice(0, eq);
        }
        if (flags[a]) {
            if (value !== null) usageError(`argument ${a}: ignored explicit argument '${value}'`);
            args[flags[a]] = true;
        } else if (valued[a]) {
            if (value === null) {
                if (i + 1 >= argv.length || (argv[i + 1].startsWith('--') && argv[i + 1].length > 2)) {
                    usageError(`argument ${a}: expected one argument`);
                }
                value = argv[++i];
            }
            const key = valued[a];
            if (key === 'port' || key === 'interval' || key === 'maxSize' || key === 'firstTransactionId') args[key] = intArg(a, value);
            else if (key === 'ocpp') {
                if (!Object.prototype.hasOwnProperty.call(PROTOCOLS, value)) {
                    usageError(`argument --ocpp: invalid choice: '${value}' (choose from '1.6', '2.0.1')`);
                }
                args[key] = value;
            }
            else if (key === 'pingInterval') {
                const f = Number(value);
                if (value.trim() === '' || !Number.isFinite(f)) usageError(`argument ${a}: invalid float value: '${value}'`);
                args[key] = f;
            } else if (key === 'bootStatus') {
                if (!REGISTRATION_STATUSES.includes(value)) {
                    usageError(`argument --boot-status: invalid choice: '${value}' (choose from ${REGISTRATION_STATUSES.map((s) => `'${s}'`).join(', ')})`);
                }
                args[key] = value;
            } else args[key] = value;
        } else {
            usageError(`unrecognized arguments: ${argv.slice(i).join(' ')}`);
        }
    }
    if (args.interval < 0) usageError('--interval must be >= 0');
    if (!(args.port >= 0 && args.port <= 65535)) usageError('--port must be 0..65535');
    if (!(args.maxSize > 0)) usageError('--max-size must be > 0');
    return args;
}

async function main() {
    const args = parseArgs(process.argv.slice(2));
    STRICT_DATETIME = !args.lenientDatetime;
    PROTO = PROTOCOLS[args.ocpp];
    let csms;
    try {
        csms = new CSMS(args);
    } catch (e) {
        process.stderr.write(`csms.js: error: ${e.message}\n`);
        return 1;
    }
    // A test peer should survive its own bugs: log them and carry on.
    process.on('unhandledRejection', (e) => csms.internalError(e));
    process.on('uncaughtException', (e) => csms.internalError(e));
    try {
        return await csms.run();
    } catch (e) {
        process.stderr.write(`csms.js: error: ${e.message}\n`);
        return 1;
    }
}

if (require.main === module) {
    main().then((code) => process.exit(code));
}

module.exports = { checkDatetime, scanJson, checkFrame, parseStationPath, parseBasicAuth, StrictValidator };
