import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'coverage/', 'node_modules/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-console': 'error',
    },
  },
  {
    // CommonJS JavaScript (Jest's global setup and what it loads), where require() is the import.
    files: ['**/*.js'],
    languageOptions: { sourceType: 'commonjs', globals: { module: 'writable', require: 'readonly', __dirname: 'readonly' } },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    // Plain JavaScript run by Node (the build script and the benchmark).
    files: ['**/*.mjs'],
    languageOptions: {
      globals: Object.fromEntries(
        ['URL', 'setTimeout', 'clearTimeout', 'setImmediate', 'setInterval', 'fetch', 'AbortSignal'].map((name) => [name, 'readonly']),
      ),
    },
  },
  {
    // Programs that talk to a person print; the library never does.
    files: ['examples/**', 'scripts/**', 'bench/**', 'src/cli/**', 'test/**'],
    rules: { 'no-console': 'off' },
  },
);
