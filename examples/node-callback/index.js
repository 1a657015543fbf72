// A callback-style Node.js handler, as older Lambda code is written: (event, context, callback).
'use strict';

exports.handler = (event, context, callback) => {
  context.callbackWaitsForEmptyEventLoop = false;
  const query = event.queryStringParameters || {};
  if (query.fail) {
    callback(new Error(`failing on purpose: ${query.fail}`));
    return;
  }
  setTimeout(() => {
    callback(null, {
      statusCode: 200,
      headers: { 'content-type': 'application/json', 'x-style': 'callback' },
      body: JSON.stringify({
        method: event.httpMethod,
        requestId: context.awsRequestId,
        arn: context.invokedFunctionArn,
        function: context.functionName,
        region: process.env.AWS_REGION,
        body: event.body,
      }),
    });
  }, 5);
};
