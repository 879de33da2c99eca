// A Lambda-style Node.js function: greets whoever the event names.
exports.handler = async (event, context) => {
    const name = (event && event.name) || (typeof event === 'string' && event) || 'world';
    console.log(`greeting ${name}`);
    return { message: `hello, ${name}!`, function: context.functionName,
             request_id: context.awsRequestId, node: process.version };
};
