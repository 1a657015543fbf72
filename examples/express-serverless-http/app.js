// An Express app on Lambda through serverless-http, unchanged but for the handler export.
'use strict';

const express = require('express');
const serverless = require('serverless-http');

const app = express();
app.use(express.json());

app.get('/users/:id', (req, res) => {
  res.set('x-framework', 'express').json({ id: req.params.id, q: req.query.q || null });
});

app.post('/users', (req, res) => {
  res.status(201).json({ created: req.body });
});

app.get('/boom', () => {
  throw new Error('kaboom from Express');
});

module.exports.handler = serverless(app);
