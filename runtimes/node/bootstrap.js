'use strict';
/*
 * kiln's Node.js runtime (server mode), started by kiln-init at LOAD time:
 *
 *     node bootstrap.js FUNCTION_DIR FILE.EXPORT       (fd 3: the channel)
 *
 * or, as a spare (kiln-init's PRESTART, in a base snapshot), with no
 * arguments: it says LOAD_OK at once and waits for a LOAD frame on fd 3 (str
 * FUNCTION_DIR, str FILE.EXPORT, kv environment), takes that environment
 * into process.env and goes on as if started with those arguments.
 *
 * The Node side of what runtimes/python/bootstrap.py does for Python: it
 * loads the handler once (require() for .js and .cjs, import() for .mjs and
 * for a .js that is an ES module), tells kiln-init on fd 3 (LOAD_OK, or
 * ERROR with the error's first line), then serves INVOKE frames one at a
 * time, each answered by a RESULT frame with the same request id. The frames
 * are kiln's wire protocol (docs/protocol.md, "Runtime channel"). The
 * handler's stdout and stderr (console.log, console.error) are pipes that
 * kiln-init turns into LOG frames; Node writes to pipes synchronously, so
 * every line of an invocation is out before its RESULT.
 *
 * FILE.EXPORT as Lambda reads it: FILE is a path relative to FUNCTION_DIR
 * without its extension (index, src/app), EXPORT the exported function
 * (handler; a dotted path such as api.get also works).
 *
 * The handler forms Lambda accepts:
 *   async (event, context) => value          the promise's value is the answer
 *   (event, context, callback) => { ... }    callback(err) or callback(null, value)
 *   (event, context) => value                a plain value is the answer
 * An exception, a rejected promise or callback(err) is a handled error: the
 * body is {"errorType", "errorMessage", "stackTrace"} as for Python. The
 * value is JSON-encoded (undefined: null). event is the JSON-decoded payload
 * (the raw string when it is not JSON).
 *
 * Node's standard library only; packages the function vendors in its
 * node_modules/ resolve from its files as usual.
 */
const fs = require('fs');
const net = require('net');
const path = require('path');
const { pathToFileURL } = require('url');

const MAGIC = 0x504e4c4b; // "KLNP"
const VERSION = 1;
const HEADER = 16; // u32 magic, u8 version, u8 type, u16 flags, u32 length, u32 id
const T_LOAD = 0x03, T_LOAD_OK = 0x04, T_INVOKE = 0x05, T_RESULT = 0x06, T_ERROR = 0x0d;
const ERR_LOAD_FAILED = 7;
const ST_OK = 0, ST_HANDLED = 1, ST_UNHANDLED = 2;
const MAX_PAYLOAD = 6 * 1024 * 1024 + 64 * 1024;
const CHANNEL_FD = 3;

function frame(type, id, payload) {
	const h = Buffer.alloc(HEADER);
	h.writeUInt32LE(MAGIC, 0);
	h.writeUInt8(VERSION, 4);
	h.writeUInt8(type, 5);
	h.writeUInt16LE(0, 6);
	h.writeUInt32LE(payload.length, 8);
	h.writeUInt32LE(id >>> 0, 12);
	return Buffer.concat([h, payload]);
}

function u32(v) {
	const b = Buffer.alloc(4);
	b.writeUInt32LE(v >>> 0, 0);
	return b;
}

function bytes(b) {
	return Buffer.concat([u32(b.length), b]);
}

function str(s) {
	return bytes(Buffer.from(String(s).replace(/\0/g, '?'), 'utf8'));
}

/* INVOKE: u32 deadline_ms, kv context, bytes payload. Throws on a short one. */
function decodeInvoke(p) {
	let pos = 0;
	const need = (n) => {
		if (pos + n > p.length)
			throw new Error('field past the end');
	};
	const readU32 = () => {
		need(4);
		const v = p.readUInt32LE(pos);
		pos += 4;
		return v;
	};
	const readBytes = () => {
		const n = readU32();
		need(n);
		const b = p.subarray(pos, pos + n);
		pos += n;
		return b;
	};
	const deadlineMs = readU32();
	const ctx = {};
	for (let n = readU32(); n > 0; n--) {
		const k = readBytes().toString('utf8');
		ctx[k] = readBytes().toString('utf8');
	}
	return { deadlineMs, ctx, data: readBytes() };
}

/* RESULT: u8 status, u32 duration_us (kiln-init fills it), bytes body,
 * str error_type, str error_message. */
function encodeResult(status, body, errorType, errorMessage) {
	return Buffer.concat([Buffer.from([status]), u32(0), bytes(body || Buffer.alloc(0)),
		str(errorType || ''), str(errorMessage || '')]);
}

/* What Lambda hands a Node handler as its second argument, plus http: the
 * request that carried the event when it came over HTTP (kilnd's
 * /function/NAME route): method, path after the name, raw query string,
 * headers with lower-case names. */
function makeContext(rid, deadlineMs, ctx, settle) {
	const started = performance.now();
	const mem = ctx.memory_limit_mb || process.env.KILN_MEMORY_MB || '0';
	const headers = {};
	for (const k of Object.keys(ctx))
		if (k.startsWith('http_header_'))
			headers[k.slice(12).replace(/_/g, '-')] = ctx[k];
	const context = {
		awsRequestId: ctx.request_id || String(rid),
		functionName: ctx.function_name || process.env.KILN_FUNCTION_NAME || '',
		functionVersion: ctx.function_version || '$LATEST',
		invokedFunctionArn: ctx.invoked_function_arn || '',
		memoryLimitInMB: /^[0-9]+$/.test(mem) ? mem : '0',
		logGroupName: '',
		logStreamName: '',
		identity: undefined,
		clientContext: undefined,
		callbackWaitsForEmptyEventLoop: true,
		http: {
			method: ctx.http_method || '',
			path: ctx.http_path || '',
			query: ctx.http_query || '',
			headers,
		},
		getRemainingTimeInMillis() {
			if (!deadlineMs)
				return 2 ** 31 - 1;
			return Math.max(0, Math.floor(deadlineMs - (performance.now() - started)));
		},
		/* Lambda's older completion methods. */
		done(err, value) {
			settle(err, value);
		},
		succeed(value) {
			settle(null, value);
		},
		fail(err) {
			settle(err === undefined || err === null ? new Error('handler failed') : err);
		},
	};
	context.requestId = context.awsRequestId;
	return context;
}

/* The body of a handled error, and its type and message, as Python's. */
function errorShape(err) {
	let type, message, stack;
	if (err instanceof Error) {
		type = err.name || (err.constructor && err.constructor.name) || 'Error';
		message = err.message;
		/* The handler's frames: up to the first of this file's. */
		stack = [];
		for (const l of String(err.stack || '').split('\n').slice(1)) {
			if (l.includes(__filename))
				break;
			stack.push(l.trim());
		}
	} else {
		type = typeof err === 'object' && err !== null ? 'Object' : typeof err;
		try {
			message = typeof err === 'string' ? err : JSON.stringify(err);
		} catch (e) {
			message = String(err);
		}
		stack = [];
	}
	return { errorType: type, errorMessage: String(message), stackTrace: stack };
}

function handledResult(err) {
	const e = errorShape(err);
	console.error(err instanceof Error ? err.stack || String(err) :
		`${e.errorType}: ${e.errorMessage}`);
	return encodeResult(ST_HANDLED, Buffer.from(JSON.stringify(e)), e.errorType,
		e.errorMessage);
}

function okResult(value) {
	let body;
	try {
		body = JSON.stringify(value === undefined ? null : value);
		if (body === undefined) // a function or a symbol
			body = 'null';
	} catch (e) {
		return encodeResult(ST_UNHANDLED, null, 'Runtime.MarshalError',
			`cannot encode the response: ${e.name}: ${e.message}`);
	}
	return encodeResult(ST_OK, Buffer.from(body));
}

/* Runs one invocation; resolves to its RESULT payload. */
function runOne(fn, rid, payload) {
	return new Promise((resolve) => {
		let done = false;
		const settle = (err, value) => {
			if (done)
				return;
			done = true;
			resolve(err !== undefined && err !== null ? handledResult(err) : okResult(value));
		};
		let inv;
		try {
			inv = decodeInvoke(payload);
		} catch (e) {
			done = true;
			resolve(encodeResult(ST_UNHANDLED, null, 'Runtime.ProtocolError',
				`malformed INVOKE: ${e.message}`));
			return;
		}
		const text = inv.data.toString('utf8');
		let event;
		try {
			event = JSON.parse(text);
		} catch (e) {
			event = text;
		}
		const context = makeContext(rid, inv.deadlineMs, inv.ctx, settle);
		current = settle;
		let ret;
		try {
			ret = fn(event, context, settle);
		} catch (e) {
			settle(e);
			return;
		}
		if (ret && typeof ret.then === 'function')
			ret.then((v) => settle(null, v), (e) => settle(e === undefined ? null : e));
		else if (fn.length < 3)
			settle(null, ret);
		/* else: a callback-style handler answers through its callback. */
	});
}

/* The handler's file: FILE with .js, .mjs or .cjs, in that order. */
function findModule(fndir, file) {
	for (const ext of ['.js', '.mjs', '.cjs']) {
		const p = path.resolve(fndir, file + ext);
		if (fs.existsSync(p))
			return p;
	}
	return null;
}

async function loadHandler(fndir, spec) {
	const slash = spec.lastIndexOf('/') + 1;
	const dot = spec.indexOf('.', slash);
	if (dot <= slash || dot === spec.length - 1)
		throw Object.assign(new Error(`handler '${spec}' is not FILE.EXPORT`),
			{ name: 'Runtime.MalformedHandlerName' });
	const file = spec.slice(0, dot), exportPath = spec.slice(dot + 1);
	const where = findModule(fndir, file);
	if (!where)
		throw Object.assign(new Error(`Cannot find module '${file}' (no ${file}.js, ` +
			`${file}.mjs or ${file}.cjs in the function's code)`),
			{ name: 'Runtime.ImportModuleError' });
	let mod;
	if (where.endsWith('.mjs')) {
		mod = await import(pathToFileURL(where).href);
	} else {
		try {
			mod = require(where);
		} catch (e) {
			if (e.code !== 'ERR_REQUIRE_ESM')
				throw e;
			mod = await import(pathToFileURL(where).href);
		}
	}
	let fn = mod;
	for (const part of exportPath.split('.')) {
		fn = fn === null || fn === undefined ? undefined : fn[part];
		/* an ES module's `export default {handler}` or CommonJS seen from import() */
		if (fn === undefined && mod && mod.default && mod.default[part] !== undefined &&
		    part === exportPath.split('.')[0])
			fn = mod.default[part];
	}
	if (typeof fn !== 'function')
		throw Object.assign(new Error(`${spec} is undefined or not exported`),
			{ name: 'Runtime.HandlerNotFound' });
	return fn;
}

let chan;
let current = null; // the running invocation's settle, for uncaught errors

function send(type, id, payload) {
	chan.write(frame(type, id, payload));
}

/* Frames from kiln-init, in order, to onFrame(type, id, payload) (which the
 * caller may replace as the runtime moves on). */
function readFrames(onFrame) {
	let buf = Buffer.alloc(0);
	const reader = { onFrame };
	chan.on('data', (chunk) => {
		buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
		while (buf.length >= HEADER) {
			const length = buf.readUInt32LE(8);
			if (buf.readUInt32LE(0) !== MAGIC || buf.readUInt8(4) !== VERSION ||
			    length > MAX_PAYLOAD) {
				console.error('kiln bootstrap: bad frame from kiln-init');
				process.exit(1);
			}
			if (buf.length < HEADER + length)
				break;
			const type = buf.readUInt8(5), id = buf.readUInt32LE(12);
			const payload = Buffer.from(buf.subarray(HEADER, HEADER + length));
			buf = buf.subarray(HEADER + length);
			reader.onFrame(type, id, payload);
		}
	});
	chan.on('end', () => process.exit(0));
	chan.on('error', () => process.exit(0));
	return reader;
}

/* INVOKEs, one at a time, in order. */
function serve(fn, reader) {
	const queue = [];
	let busy = false;

	const next = () => {
		if (busy || queue.length === 0)
			return;
		const { type, id, payload } = queue.shift();
		if (type !== T_INVOKE) {
			console.error(`kiln bootstrap: unexpected frame type ${type}`);
			process.exit(1);
		}
		busy = true;
		runOne(fn, id, payload).then((result) => {
			current = null;
			send(T_RESULT, id, result);
			busy = false;
			next();
		});
	};
	reader.onFrame = (type, id, payload) => {
		queue.push({ type, id, payload });
		next();
	};
}

/* A spare's LOAD: str dir, str handler, kv environment. */
function decodeBind(p) {
	let pos = 0;
	const readU32 = () => {
		if (pos + 4 > p.length)
			throw new Error('field past the end');
		const v = p.readUInt32LE(pos);
		pos += 4;
		return v;
	};
	const readStr = () => {
		const n = readU32();
		if (pos + n > p.length)
			throw new Error('field past the end');
		const v = p.toString('utf8', pos, pos + n);
		pos += n;
		return v;
	};
	const fndir = readStr(), spec = readStr(), env = {};
	for (let n = readU32(); n > 0; n--) {
		const k = readStr();
		env[k] = readStr();
	}
	if (pos !== p.length)
		throw new Error('trailing bytes');
	return { fndir, spec, env };
}

/* A spare: LOAD_OK now, then the function's LOAD. */
function spareWait(reader) {
	return new Promise((resolve) => {
		reader.onFrame = (type, id, payload) => {
			reader.onFrame = () => {
				console.error('kiln bootstrap: a frame before the function loaded');
				process.exit(1);
			};
			if (type !== T_LOAD) {
				console.error(`kiln bootstrap: a spare runtime got frame type ${type}, not LOAD`);
				process.exit(1);
			}
			let bind;
			try {
				bind = decodeBind(payload);
			} catch (e) {
				console.error(`kiln bootstrap: malformed LOAD: ${e.message}`);
				process.exit(1);
			}
			Object.assign(process.env, bind.env);
			resolve(bind);
		};
		send(T_LOAD_OK, 0, Buffer.concat([u32(0), u32(0)]));
	});
}

/* An exception thrown, or a promise rejected, outside the handler's own
 * flow (a timer, an event handler) fails the running invocation as Lambda
 * does; with none running it is only logged. */
function uncaught(kind) {
	return (err) => {
		if (current) {
			const settle = current;
			current = null;
			settle(err === undefined || err === null ? new Error(kind) : err);
		} else {
			console.error(`kiln bootstrap: ${kind} outside an invocation:`, err);
		}
	};
}

async function main(argv) {
	if (argv.length !== 2 && argv.length !== 0) {
		console.error('usage: bootstrap.js [FUNCTION_DIR FILE.EXPORT] (fd 3: channel)');
		return 2;
	}
	chan = new net.Socket({ fd: CHANNEL_FD, readable: true, writable: true });
	const reader = readFrames(() => {
		console.error('kiln bootstrap: a frame before the function loaded');
		process.exit(1);
	});
	let fndir, spec;
	if (argv.length === 2)
		[fndir, spec] = argv;
	else
		({ fndir, spec } = await spareWait(reader));
	process.chdir(fndir);
	let fn;
	try {
		fn = await loadHandler(fndir, spec);
	} catch (e) {
		console.error(e && e.stack ? e.stack : String(e));
		const name = e && e.name ? e.name : 'Error';
		let msg = e && e.message ? `${name}: ${e.message}` : name;
		/* Where a syntax error is: the first line of its stack, FILE:LINE. */
		const at = e instanceof SyntaxError && /^(.+):(\d+)\n/.exec(String(e.stack));
		if (at)
			msg += ` (${path.relative(fndir, at[1])}, line ${at[2]})`;
		/* Then exit, as Python's does, once the frame is written. */
		chan.write(frame(T_ERROR, 0, Buffer.concat([u32(ERR_LOAD_FAILED),
			str(msg.split('\n')[0])])), () => process.exit(1));
		return 1;
	}
	process.on('uncaughtException', uncaught('Runtime.UncaughtException'));
	process.on('unhandledRejection', uncaught('Runtime.UnhandledPromiseRejection'));
	send(T_LOAD_OK, 0, Buffer.concat([u32(0), u32(0)]));
	serve(fn, reader);
	return 0;
}

main(process.argv.slice(2)).then((status) => {
	if (status)
		process.exitCode = status;
});
