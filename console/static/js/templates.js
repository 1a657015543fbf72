// The templates a new function starts from.

export const TEMPLATES = [
  {
    id: "python-hello",
    title: "Python hello",
    description: "A Python 3.11 handler that greets the caller by name.",
    runtime: "python3.11",
    handler: "main.handler",
    files: {
      "main.py": `def handler(event, context):
    name = event.get("name", "world") if isinstance(event, dict) else "world"
    print(f"hello called for {name}")
    return {"message": f"Hello, {name}!", "request_id": context.request_id}
`,
    },
    event: { name: "Ada" },
  },
  {
    id: "node-hello",
    title: "Node.js hello",
    description: "A Node.js 20 handler that greets the caller by name.",
    runtime: "nodejs20",
    handler: "index.handler",
    files: {
      "index.js": `exports.handler = async (event, context) => {
  const name = (event && event.name) || "world";
  console.log(\`hello called for \${name}\`);
  return { message: \`Hello, \${name}!\`, request_id: context.awsRequestId };
};
`,
    },
    event: { name: "Ada" },
  },
];
